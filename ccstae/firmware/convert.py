"""QKeras encoder -> hls4ml project (HLS C++ for Vitis/Vivado HLS), bit-exact with QKeras.

    spec = FirmwareSpec()                       # Vitis, io_stream, xcku115, 200 MHz
    hls_model = convert(qencoder, spec, "hls_projects/q8-s50")
    x, expected = make_tb_data("hls_projects/q8-s50", qencoder, patterns)

The conversion always passes bit_exact=True: hls4ml then derives every intermediate width
from the QKeras quantizers (model-wide precision propagation). Without it only ~1 % of
outputs match QKeras exactly (shared/STACK.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ccstae.core.outputs import atomic_write
from ccstae.core.errors import UserError

BACKENDS = ("Vitis", "Vivado")
IO_TYPES = ("io_stream", "io_parallel")
STRATEGIES = ("Latency", "Resource")
PROJECT_NAME = "myproject"  # what the generated testbench, build scripts and reports expect

# AMD/Xilinx part names the Vivado/Vitis HLS backends accept: family, device number, optional
# suffix, package, speed grade (and temperature grade), e.g. xcku115-flvb2104-2-i,
# xcu250-figd2104-2L-e, xcvu9p-flga2104-2L-e, xczu9eg-ffvb1156-2-e, xc7z020clg400-1.
PART_PATTERN = re.compile(
    r"^xc(7a|7k|7v|7z|ku|vu|au|zu|u|vc|ve|vp|vm|vh)\d+[a-z]*-?[a-z]+\d+-\d[a-z0-9-]*$", re.IGNORECASE)
EXAMPLE_PARTS = "xcku115-flvb2104-2-i (Kintex UltraScale), xcvu9p-flga2104-2L-e, xcu250-figd2104-2L-e, xczu9eg-ffvb1156-2-e"

# QKeras classes a hls4ml-ready encoder may hold; anything else is reported before hls4ml sees it.
QKERAS_LAYERS = {"QConv2D", "QDense", "QActivation", "QConv2DBatchnorm", "QDenseBatchnorm"}
PLAIN_LAYERS = {"InputLayer", "MaxPooling2D", "AveragePooling2D", "Flatten", "Reshape"}
FLOAT_LAYERS = {"Conv2D", "Dense", "Activation", "ReLU", "BatchNormalization", "Conv1D", "DepthwiseConv2D",
                "SeparableConv2D"}


@dataclass
class FirmwareSpec:
    """How the encoder becomes HLS. Plain data: FirmwareSpec.from_config(cfg["firmware"])."""

    backend: str = "Vitis"
    io_type: str = "io_stream"  # io_parallel unrolls convolutions into huge code (hls4ml issue 1269)
    # Kintex UltraScale KU115: the mid-range, industrial-grade (-i) part of detector read-out
    # boards (663k LUTs, 5,520 DSPs, 16 Gb/s transceivers for the camera links); a Virtex or
    # Alveo part costs several times as much for resources a small encoder does not need.
    part: str = "xcku115-flvb2104-2-i"
    clock_period_ns: float = 5.0  # 200 MHz: an io_stream encoder takes ~one input pixel per clock
    reuse_factor: int = 1
    strategy: str = "Latency"
    # Only for layers no quantizer covers (none in a build_qencoder model): bit_exact sets the rest.
    default_precision: str = "ap_fixed<16,6>"

    @classmethod
    def from_config(cls, section: dict) -> "FirmwareSpec":
        """From a [firmware] config section; keys that are not spec fields are left to their owners."""
        names = {f.name for f in fields(cls)}
        spec = cls(**{k: v for k, v in section.items() if k in names})
        spec.validate()
        return spec

    def validate(self) -> None:
        # Accept any capitalisation, store hls4ml's spelling.
        self.backend = _pick("backend", self.backend, BACKENDS)
        self.io_type = _pick("io_type", self.io_type, IO_TYPES)
        self.strategy = _pick("strategy", self.strategy, STRATEGIES)
        if not PART_PATTERN.match(str(self.part)):
            raise UserError(f"firmware part {self.part!r} is not an AMD/Xilinx part name the {self.backend} "
                            f"backend can target; set part to one like {EXAMPLE_PARTS}")
        if int(self.reuse_factor) != self.reuse_factor or self.reuse_factor < 1:
            raise UserError(f"firmware reuse_factor must be an integer >= 1 (got {self.reuse_factor})")
        if not 1.0 <= float(self.clock_period_ns) <= 100.0:
            raise UserError(f"firmware clock_period_ns must be in [1, 100] ns (got {self.clock_period_ns})")
        self.reuse_factor, self.clock_period_ns = int(self.reuse_factor), float(self.clock_period_ns)


def _pick(option: str, value, allowed) -> str:
    for a in allowed:
        if str(value).lower() == a.lower():
            return a
    raise UserError(f"firmware {option} {value!r} is not supported; use one of {', '.join(allowed)}")


def check_model(model) -> None:
    """Raise UserError for anything in the encoder that would not give bit-exact firmware."""
    import hls4ml

    supported = set(hls4ml.converters.get_supported_keras_layers())
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "PruneLowMagnitude":
            raise UserError(f"layer {layer.name} is still wrapped for pruning; strip it first "
                            f"(ccstae.quant.prune.strip) — hls4ml has no handler for tfmot wrappers")
        if cls in FLOAT_LAYERS:
            raise UserError(f"layer {layer.name} is a float {cls}: the firmware needs the quantized encoder "
                            f"(ccstae.quant.qmodel.build_qencoder), with a QKeras layer for every {cls}")
        if cls not in QKERAS_LAYERS | PLAIN_LAYERS or cls not in supported:
            raise UserError(f"layer {layer.name} ({cls}) is not supported by the firmware flow; the encoder may "
                            f"hold {', '.join(sorted(QKERAS_LAYERS | PLAIN_LAYERS))}")
        if cls in ("QConv2D", "QDense"):
            for attr in ("kernel_quantizer", "bias_quantizer") if layer.use_bias else ("kernel_quantizer",):
                q = getattr(layer, attr + "_internal", None)
                if q is None:
                    raise UserError(f"layer {layer.name} has no {attr}: give it quantized_bits(bits, integer, "
                                    f"alpha=1) (ccstae.quant.qmodel.build_qencoder does)")
                if getattr(q, "alpha", 1) not in (1, 1.0, None):
                    raise UserError(f"layer {layer.name}: {attr} alpha={q.alpha!r}; the bit-exact flow "
                                    f"needs alpha=1")
    first = model.layers[1] if len(model.layers) > 1 else None
    if type(first).__name__ != "QActivation" or type(first.quantizer).__name__ != "quantized_bits":
        raise UserError("the encoder's first layer after the input must quantize it, "
                        "QActivation(quantized_bits(...)) (ccstae.quant.qmodel.build_qencoder does)")


def _hls_config(model, spec: FirmwareSpec) -> dict:
    import hls4ml

    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=spec.backend,
                                                  default_precision=spec.default_precision,
                                                  default_reuse_factor=spec.reuse_factor)
    config["Model"]["Strategy"] = spec.strategy
    config["Model"]["ReuseFactor"] = spec.reuse_factor
    # hls4ml 1.3 gives every QKeras quantized_bits a signed type (QKerasQuantizer._get_type
    # ignores keep_negative), so an unsigned input quantizer would lose a fractional bit
    # (ap_fixed<8,2> instead of ap_ufixed<8,1>) and only ~10 % of outputs would match QKeras.
    # Name the unsigned type, with QKeras' rounding (half to even) and saturation.
    for layer in model.layers:
        if type(layer).__name__ == "QActivation" and type(layer.quantizer).__name__ == "quantized_bits":
            qc = layer.quantizer.get_config()
            if not qc.get("keep_negative", True):
                entry = config["LayerName"].setdefault(layer.name, {})
                if not isinstance(entry.get("Precision"), dict):
                    entry["Precision"] = {}
                entry["Precision"]["result"] = f"ufixed<{qc['bits']},{qc['integer']},RND_CONV,SAT>"
    return config


def convert(qencoder, spec: FirmwareSpec | None = None, out_dir="hls_project"):
    """Convert and write the HLS project (with hls4ml_config.yml) to out_dir; returns the hls model.

    hls_model.compile() (csim.compare_compiled does it) builds the Python-callable library.
    """
    import hls4ml

    spec = spec or FirmwareSpec()
    spec.validate()
    check_model(qencoder)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hls_model = hls4ml.converters.convert_from_keras_model(
        qencoder, hls_config=_hls_config(qencoder, spec), output_dir=str(out_dir), project_name=PROJECT_NAME,
        backend=spec.backend, part=spec.part, clock_period=spec.clock_period_ns, io_type=spec.io_type,
        bit_exact=True)
    hls_model.write()  # the project, with hls4ml's own record of the config: hls4ml_config.yml
    return hls_model


@dataclass
class FixedFormat:
    """An ap_(u)fixed<width, integer> format; integer includes the sign bit (HLS convention)."""

    signed: bool
    width: int
    integer: int

    @property
    def lsb(self) -> float:
        return 2.0 ** (self.integer - self.width)

    @property
    def min(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def max(self) -> float:
        return 2.0 ** (self.integer - self.signed) - self.lsb

    def snap(self, x, clip: bool = False) -> np.ndarray:
        """Round to the LSB grid (half to even, as AP_RND_CONV and QKeras do), optionally saturate."""
        y = np.round(np.asarray(x, np.float64) / self.lsb) * self.lsb
        return np.clip(y, self.min, self.max) if clip else y

    def __str__(self):
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}>"

    @classmethod
    def parse(cls, text: str) -> "FixedFormat":
        """From 'ap_fixed<16,4,...>', 'ufixed<8,1,RND_CONV,SAT,0>' or an hls4ml precision type."""
        if hasattr(text, "width") and hasattr(text, "integer"):
            return cls(bool(text.signed), int(text.width), int(text.integer))
        m = re.search(r"(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)", str(text))
        if not m:
            raise ValueError(f"not a fixed-point type: {text!r}")
        return cls(m.group(1) != "u", int(m.group(2)), int(m.group(3)))


def io_formats(hls_model) -> tuple[FixedFormat, FixedFormat]:
    """(input format, output format) of a converted model."""
    inp = hls_model.get_input_variables()[0].type.precision
    out = hls_model.get_output_variables()[0].type.precision
    return FixedFormat.parse(inp), FixedFormat.parse(out)


def project_io_formats(prj_dir) -> tuple[FixedFormat, FixedFormat]:
    """(input format, output format) read from a written project's firmware/ headers."""
    prj_dir = Path(prj_dir)
    header = (prj_dir / "firmware" / f"{PROJECT_NAME}.h").read_text()
    defines = (prj_dir / "firmware" / "defines.h").read_text()
    m = re.search(rf"void\s+{PROJECT_NAME}\s*\((.*?)\)", header, re.S)
    if not m:
        raise ValueError(f"{prj_dir}: no {PROJECT_NAME}() in firmware/{PROJECT_NAME}.h")
    # Arguments look like "hls::stream<pattern_t> &pattern" or "pattern_t pattern[N]".
    types = re.findall(r"(\w+_t)\b", m.group(1))
    formats = []
    for name in (types[0], types[-1]):
        t = re.search(rf"typedef\s+(.*?)\s+{name}\s*;", defines)
        if not t:
            raise ValueError(f"{prj_dir}: no typedef for {name} in firmware/defines.h")
        formats.append(FixedFormat.parse(t.group(1)))
    return formats[0], formats[1]


def layer_types(hls_model) -> dict:
    """{layer: result type} after the bit-exact pass: what the firmware computes with."""
    return {layer.name: str(layer.get_output_variable().type.precision) for layer in hls_model.get_layers()}


def _write_dat(path: Path, rows: np.ndarray) -> None:
    rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
    # repr-exact: 17 significant digits round-trip any float64 (grid values print short anyway).
    lines = (" ".join(f"{v:.17g}" for v in row) for row in rows)
    atomic_write(path, "\n".join(lines) + "\n")


def write_tb_data(out_dir, inputs, expected, input_format: FixedFormat | None = None) -> np.ndarray:
    """Write tb_data/tb_input_features.dat and tb_output_predictions.dat, one pattern per line.

    Inputs are snapped to the input type's LSB grid first (input_format, or read from the
    project), so the testbench's float -> fixed cast cannot round them another way. Out-of-range
    values are NOT clipped here: the firmware's input type saturates them, which is what the
    testbench must show. `expected` must be the QKeras outputs of the snapped inputs (returned):
    make_tb_data does both.
    """
    out_dir = Path(out_dir)
    fmt = input_format or project_io_formats(out_dir)[0]
    x = fmt.snap(inputs)
    expected = np.asarray(expected, np.float64)
    if len(x) != len(expected):
        raise ValueError(f"{len(x)} input patterns but {len(expected)} expected outputs")
    (out_dir / "tb_data").mkdir(parents=True, exist_ok=True)
    _write_dat(out_dir / "tb_data" / "tb_input_features.dat", x)
    _write_dat(out_dir / "tb_data" / "tb_output_predictions.dat", expected)
    return x


def make_tb_data(out_dir, qencoder, inputs) -> tuple[np.ndarray, np.ndarray]:
    """Snap inputs, predict them with the QKeras encoder, write tb_data; returns (x, expected)."""
    fmt = project_io_formats(out_dir)[0]
    x = fmt.snap(inputs).astype(np.float32)
    expected = qencoder.predict(x, verbose=0, batch_size=256)
    write_tb_data(out_dir, x, expected, fmt)
    return x, expected
