"""FPGA resource and latency estimates from a converted hls4ml model, without compile() or Vivado.

    hls_model = convert.convert(qencoder, spec, out_dir)
    est = estimate(hls_model)              # LUT/FF/DSP/BRAM18, latency, II, patterns/s, % of parts
    keeps_up(est, DETECTORS["arina"])      # True when the firmware is faster than the camera

Every number here is an *estimate*: est["kind"] == "estimate (hls4ml graph model)". Numbers from a
vendor csynth report (firmware/vendor.py) go through `from_vendor_report` into the same schema
with kind "synthesis (...)", so a table never mixes the two silently.

How the estimate is built (the hardware hls4ml 1.3 writes, read from its templates):

* Multiplications. With the Latency strategy the weights are compile-time constants
  (nnet_dense_latency.h: `#pragma HLS function_instantiate variable=weights`), so HLS removes
  products by a constant zero and turns products by +-2^k into wires (shifts): only the other
  weights cost a multiplier. Pruning therefore saves multipliers one for one.
* DSP or LUTs. A product is bound to a DSP48 when the streamed (data) operand is wider than
  `dsp_min_data_bits` and the constant weight wider than `dsp_min_weight_bits`; otherwise it
  becomes shift-and-add logic in LUTs. Why this rule: with a constant operand the cost in fabric
  grows with the data width, and the hls4ml paper (Duarte et al. 2018, JINST 13 P07027) found HLS
  moving multiplications of <= ~10-bit operands to LUTs. On the hls4ml tutorial's SVHN CNN
  (6-bit weights) it puts the first convolution (16-bit input pixels) and the batch-norm scales
  on DSPs, the 6-bit-activation layers in LUTs, which is what reproduces its ~340 DSPs.
  A LUT multiplier costs `lut_per_mult_bit * wa * wb` LUTs (shift-add of a constant: about one
  adder of the data width per non-zero digit of the weight).
* Adder trees. Each output sums its non-zero products (+ bias): n-1 two-input adders in a
  balanced tree. Level l of the tree is (product width + l) bits wide, capped at the
  accumulator width (Vivado trims the bits that cannot change); nominally 1 LUT per bit
  (UltraScale carry chain, CARRY8 + one LUT per bit), scaled by `adder_lut_per_bit` < 1
  because synthesis merges the trees with the shift-add constant multipliers.
* Reuse factor R. `#pragma HLS ALLOCATION ... limit=multiplier_limit` and `PIPELINE II=R`
  (nnet_dense_latency.h, nnet_conv2d_stream.h): R divides multipliers and adders and multiplies
  each layer's II.
* io_stream dataflow (nnet_conv2d_stream.h conv_2d_buffer_cl): a convolution reads one input
  pixel (all channels) per R clocks and keeps filt_height-1 rows in `ap_shift_reg` line
  buffers; pooling keeps pool_height-1 rows (nnet_pooling_stream.h); a Dense after Flatten
  reads one packed pixel per clock (nnet_dense_stream.h). Layers run concurrently (DATAFLOW),
  so the network's II is the largest layer II, and the latency is the input streaming time of
  the first layer plus each layer's pipeline depth.
* Memories. Line buffers and the FIFOs between layers (hls4ml declares every stream with the
  depth of its whole feature map, `('stream', depth)` in the graph) go to BRAM18 when deep and
  wide enough, else to SRL/LUTRAM. BRAM18 count: the best of the 18 Kb aspect ratios
  (512x36, 1Kx18, 2Kx9, 4Kx4, 8Kx2, 16Kx1).
* Weights. Latency strategy: constants in the logic (no memory). Resource strategy: weights
  in ROMs of depth R (nnet_dense_resource.h), BRAM when deep, LUT-ROM otherwise.
* io_parallel: dense layers have II = R; a convolution (nnet_conv2d_latency.h) computes
  out_pixels / n_partitions pixels per iteration over n_partitions iterations at II = R, so its
  II is R x n_partitions. Network II = the largest layer II, latency = the sum of the layer
  depths (a convolution's depth includes its partition loop). Rougher than io_stream.

The few constants (`DEFAULTS`) were tuned once on the hls4ml tutorial's SVHN CNN against its
published Vivado synthesis numbers (calibration_table()); they are not fitted to this project.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

KIND_ESTIMATE = "estimate (hls4ml graph model)"
RESOURCES = ("LUT", "FF", "DSP", "BRAM18")
QUANTITIES = ("LUT", "FF", "DSP", "BRAM18", "latency_cycles", "ii_cycles")
FIT_FILE = Path(__file__).resolve().parent / "calibration" / "fit.json"

# LUTs and FFs are linear in hardware counts ("features"); the coefficients are fitted on the
# published designs of firmware/calibration/designs.toml (firmware/calibration.py) and loaded from
# fit.json. These defaults are used only when fit.json is absent.
FEATURES = {"LUT": ("lut_mult", "lut_add", "lut_logic", "lut_reuse", "process"),
            "FF": ("ff_pipe", "ff_io", "ff_reuse", "process")}
FITTED = tuple(FEATURES)
# What each coefficient may physically be (the fit stays inside): LUTs per adder bit (a carry-chain
# bit is one LUT; synthesis merges some), per shift-add bit, per logic/mux LUT counted; LUTs and FFs
# per dataflow process (FSM, counters, handshakes); FFs per registered bit.
BOUNDS = {"LUT": {"lut_mult": (0.1, 1.0), "lut_add": (0.5, 1.2), "lut_logic": (0.3, 1.5),
                  "lut_reuse": (0.3, 1.5), "process": (20.0, 400.0)},
          "FF": {"ff_pipe": (0.2, 1.2), "ff_io": (0.2, 1.2), "ff_reuse": (0.5, 1.2), "process": (50.0, 600.0)}}
DEFAULT_COEFFICIENTS = {"LUT": {"lut_mult": 0.5, "lut_add": 0.9, "lut_logic": 0.5, "lut_reuse": 1.0, "process": 70.0},
                        "FF": {"ff_pipe": 0.5, "ff_io": 0.5, "ff_reuse": 1.0, "process": 400.0}}

# Rules and physical constants (not fitted): how HLS maps a product, memory thresholds, delays.
DEFAULTS = {
    "dsp_min_data_bits": 11,      # a product goes to a DSP48 when the data operand is wider than 10 bits ...
    "dsp_min_weight_bits": 5,     # ... and the weight type wider than 4 bits ...
    "lut_max_weight_digits": 2,   # ... and the weight has more than 2 signed digits (else shift-and-add)
    "csd_min_weight_bits": 9,     # ... (that rule for weight types of 9+ bits)
    "alloc_max_weight_digits": 3,  # under an ALLOCATION limit (reuse > 1) HLS shift-adds up to 3 digits
    "srl_max_depth": 64,          # memories at most this deep stay in SRL/LUTRAM (Vivado: SRLC32E, RAM64M) ...
    "bram_min_bits": 128,         # ... as do those smaller than this many bits
    "softmax_tables_bram18": 2,   # exp and inverse tables, 1024 x 18 bits each
    "clock_uncertainty": 0.125,   # HLS default: 12.5 % of the period is kept for routing
    "frame_overhead_cycles": 4,   # io_stream: per-frame start/flush cycles of the first layer
}
# Combinational delays in ns HLS plans with, as Vivado HLS 2020.1 schedule reports list them for
# these parts (xc7z020-1; UltraScale+ -2): a 16-20 bit adder with its net delay, a DSP48 multiply,
# a block-RAM read. Set by hand from typical reports, not fitted.
DELAYS_NS = {"7series": {"add": 2.4, "dsp": 3.4, "bram": 2.5},
             "ultrascale": {"add": 1.1, "dsp": 2.1, "bram": 1.6}}

# FPGA parts: totals from the AMD/Xilinx product tables (CLB LUTs, CLB flip-flops, DSP slices,
# 18 Kb block RAMs = 2 x the 36 Kb count). Sources: DS890 UltraScale Architecture and Product
# Data Sheet (KU115), DS891 Zynq UltraScale+ MPSoC Overview (ZU9EG), DS922 Kintex UltraScale+
# (KU5P), DS923 Virtex UltraScale+ (VU9P), DS962 Alveo U200/U250 data sheet (U250; the same
# totals hls4ml's csynth reports list as "available" for xcu250-figd2104-2L-e).
PARTS = {
    "xcku115": {"LUT": 663_360, "FF": 1_326_720, "DSP": 5_520, "BRAM18": 4_320},   # 2,160 BRAM36
    "xcku5p": {"LUT": 216_960, "FF": 433_920, "DSP": 1_824, "BRAM18": 960},         # 480 BRAM36
    "xczu9eg": {"LUT": 274_080, "FF": 548_160, "DSP": 2_520, "BRAM18": 1_824},      # 912 BRAM36
    "xcvu9p": {"LUT": 1_182_240, "FF": 2_364_480, "DSP": 6_840, "BRAM18": 4_320},   # 2,160 BRAM36
    "xcu250": {"LUT": 1_728_000, "FF": 3_456_000, "DSP": 12_288, "BRAM18": 5_376},  # 2,688 BRAM36
}

# 4D-STEM cameras: full-frame rates in frames (patterns) per second. "confidence" says how sure
# the number is; the encoder sees binned/cropped patterns, so only the rate matters here.
DETECTORS = {
    # NCEM 4D Camera (LBNL/Gatan), 576x576, 87 kHz: Ercius et al., Microsc. Microanal. (2020) and
    # NCEM's instrument page. Confident.
    "ncem_4d_camera": {"name": "NCEM 4D Camera", "frame_rate_hz": 87_000, "confidence": "high"},
    # Dectris ARINA, 192x192 hybrid pixel, up to 120 kHz (Dectris product sheet). Confident.
    "arina": {"name": "Dectris ARINA", "frame_rate_hz": 120_000, "confidence": "high"},
    # EMPAD (Tate et al., Microsc. Microanal. 22, 237 (2016)), 128x128, ~1.1 kHz. Confident.
    "empad": {"name": "EMPAD (Thermo Fisher)", "frame_rate_hz": 1_100, "confidence": "high"},
    # EMPAD-G2 (Philipp et al., Microsc. Microanal. 28 (2022)): ~10 kHz. Fairly confident.
    "empad_g2": {"name": "EMPAD-G2", "frame_rate_hz": 10_000, "confidence": "medium"},
    # Quantum Detectors Merlin (Medipix3), 256x256: ~12.5 kHz in 1-bit counting mode, ~1-2 kHz
    # at 12-bit depth (vendor material; mode-dependent). Less sure of the exact figures.
    "merlin_1bit": {"name": "Merlin/Medipix3 1-bit", "frame_rate_hz": 12_500, "confidence": "medium"},
    "merlin_12bit": {"name": "Merlin/Medipix3 12-bit", "frame_rate_hz": 1_200, "confidence": "low"},
}

PARTS.update({
    "xc7z020": {"LUT": 53_200, "FF": 106_400, "DSP": 220, "BRAM18": 280},            # DS190 Zynq-7000
    "xcu50": {"LUT": 871_680, "FF": 1_743_360, "DSP": 5_952, "BRAM18": 2_688},       # DS965 Alveo U50
})

MULT_CLASSES = {"Conv1D", "Conv2D", "Conv2DBatchnorm", "Dense", "PointwiseConv1D", "PointwiseConv2D"}
ELEMENTWISE_CLASSES = {"Activation", "ReLU", "LeakyReLU", "ParametrizedActivation", "PReLU",
                       "HardActivation", "BatchNormalization", "ApplyAlpha"}


# ----------------------------------------------------------------------------- parts and constants

def family_of(part: str | None) -> str:
    """'7series' (Zynq-7000, Artix/Kintex/Virtex-7: DSP48E1, CARRY4) or 'ultrascale' (UltraScale and
    UltraScale+, Alveo, Zynq MPSoC: DSP48E2, CARRY8, faster fabric)."""
    return "7series" if str(part or "").lower().startswith("xc7") else "ultrascale"


def part_key(part: str | None) -> str | None:
    """The PARTS key of a full part name (xcu250-figd2104-2L-e -> xcu250), or None."""
    p = str(part or "").lower()
    return next((k for k in sorted(PARTS, key=len, reverse=True) if p.startswith(k)), None)


@lru_cache(maxsize=1)
def _fit_file() -> dict:
    try:
        return json.loads(FIT_FILE.read_text())
    except (OSError, ValueError):
        return {}


def coefficients() -> dict:
    """The fitted LUT/FF coefficients (fit.json), or the defaults when there is no fit."""
    return _fit_file().get("coefficients") or DEFAULT_COEFFICIENTS


def error_bars() -> dict:
    """The error bar per quantity: the root mean square of the relative errors over the calibration
    designs, each estimated with coefficients fitted without it (leave-one-out; fit.json, written
    by bench/bench_estimate.py --refit). None per quantity when unknown."""
    loo = _fit_file().get("loo_rms_error") or {}
    return {q: loo.get(q) for q in QUANTITIES}


def linear(features: dict, coef: dict) -> float:
    return float(sum(coef.get(k, 0.0) * features.get(k, 0.0) for k in coef))


# ----------------------------------------------------------------------------- helpers

def _width(precision) -> int:
    return int(getattr(precision, "width", 16))


def _var_width(var) -> int:
    return _width(var.type.precision) if var is not None else 16


def _frac(precision) -> int:
    w, i = getattr(precision, "width", 16), getattr(precision, "integer", 6)
    return int(w) - int(i)


def _fold(precision, data: np.ndarray) -> np.ndarray:
    """Weights as the hardware holds them: rounded onto the weight type's LSB grid.

    Float weights that quantize to zero are zero in the firmware too (and free).
    """
    integer = getattr(precision, "integer", None)
    width = getattr(precision, "width", None)
    if integer is None or width is None or integer >= width:
        return np.asarray(data, np.float64)
    lsb = 2.0 ** (int(integer) - int(width))
    return np.round(np.asarray(data, np.float64) / lsb) * lsb


def weight_bits(precision, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(non-zero bits, significant span in bits) of each weight's magnitude on its LSB grid.

    A constant with one non-zero bit is a wire (shift), with two a single adder; HLS also narrows
    a constant multiplier to the span between the constant's highest and lowest set bit.
    """
    lsb = 2.0 ** (int(getattr(precision, "integer", 0)) - int(getattr(precision, "width", 0))) \
        if getattr(precision, "width", None) is not None else 2.0 ** -10
    q = np.round(np.abs(w) / lsb).astype(np.int64)
    ones = np.zeros(q.shape, np.int64)
    span = np.zeros(q.shape, np.int64)
    low = np.full(q.shape, -1, np.int64)
    for b in range(int(q.max()).bit_length() if q.size else 0):
        bit = (q >> b) & 1
        ones += bit
        low = np.where((low < 0) & (bit == 1), b, low)
        span = np.where(bit == 1, b - low + 1, span)
    return ones, span


def csd_digits(q: np.ndarray) -> np.ndarray:
    """Non-zero digits of each integer's canonical signed-digit form (e.g. 7 = 8 - 1: two digits):
    the adders a shift-and-add constant multiplier needs, plus one."""
    q = np.abs(np.asarray(q, np.int64))
    digits = np.zeros(q.shape, np.int64)
    while np.any(q):
        odd = (q & 1) == 1
        # a run of ones ...0111 becomes +1000 -1: take -1 when the next bit is also one
        step = np.where(odd, np.where((q & 3) == 3, -1, 1), 0)
        digits += odd
        q = (q - step) >> 1
    return digits


def bram18(depth: int, width: int) -> int:
    """18 Kb block RAMs for a depth x width memory: the cheapest of the 18K aspect ratios (UG573)."""
    if depth <= 0 or width <= 0:
        return 0
    shapes = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in shapes)


def memory_cost(depth: int, width: int, c: dict) -> dict:
    """BRAM18 when deep and big enough, else SRL32/LUTRAM (one LUT holds 32 bits of a shift
    register or 64 bits of a distributed RAM column, SRLC32E/RAM64X1D)."""
    if depth > c["srl_max_depth"] and depth * width >= c["bram_min_bits"]:
        return {"BRAM18": bram18(depth, width), "LUT": 0, "where": "BRAM18"}
    return {"BRAM18": 0, "LUT": width * math.ceil(depth / 32), "where": "SRL/LUTRAM"}


def adder_tree_luts(n_terms: int, product_width: int, accum_width: int) -> tuple[int, int, int]:
    """(adders, result bits, levels) of a balanced tree summing n_terms values.

    Level l adds two (product_width + l - 1)-bit numbers into product_width + l bits, capped at
    the accumulator width (Vivado trims the bits that cannot change): one LUT per result bit.
    """
    adders = luts = levels = 0
    n = n_terms
    while n > 1:
        levels += 1
        pairs = n // 2
        adders += pairs
        luts += pairs * min(accum_width, product_width + levels)
        n -= pairs
    return adders, luts, levels


def tree_level_bits(n_terms: int, product_width: int, accum_width: int) -> list[int]:
    """Bits alive after each level of the adder tree (level 0: the products themselves)."""
    out, n, level = [n_terms * min(accum_width, product_width)], n_terms, 0
    while n > 1:
        level += 1
        n -= n // 2
        out.append(n * min(accum_width, product_width + level))
    return out


def pipeline(c: dict, family: str, period_ns: float, first_ns: float, levels: int) -> tuple[int, list[int]]:
    """(cycles, register cut levels) of a product (first_ns) followed by `levels` adder levels.

    HLS fills each clock period (less its uncertainty) with operations and registers where the
    next one would not fit: a 10 ns clock holds about twice the logic of a 5 ns one, so the same
    layer has fewer pipeline stages and registers at a slower clock.
    """
    t_add = DELAYS_NS[family]["add"]
    budget = period_ns * (1.0 - c["clock_uncertainty"])
    cuts, t = [], first_ns
    if first_ns > budget:                          # a DSP product longer than a cycle: its own stage(s)
        cuts.append(0)
        t = first_ns % budget
    for level in range(1, levels + 1):
        if t + t_add > budget:
            cuts.append(level - 1)
            t = 0.0
        t += t_add
    return len(cuts) + 1, cuts


def _layer_dict(layer, cls: str) -> dict:
    return {"name": layer.name, "class": cls, "multiplications": 0, "multipliers": 0,
            "dsp_multipliers": 0, "lut_multipliers": 0, "adders": 0, "LUT": 0, "FF": 0, "DSP": 0,
            "BRAM18": 0, "depth_cycles": 0, "ii_cycles": 0, "features": {}, "notes": []}


def _add(d: dict, **features) -> None:
    for k, v in features.items():
        d["features"][k] = d["features"].get(k, 0.0) + float(v)


# ----------------------------------------------------------------------------- per layer

def _mult_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    cls, io_stream, family, period = d["class"], ctx["io_stream"], ctx["family"], ctx["period"]
    rf = int(layer.get_attr("reuse_factor", 1) or 1)
    strategy = str(layer.get_attr("strategy", "latency")).lower()
    wvar = layer.weights["weight"]
    wprec = wvar.type.precision
    w = _fold(wprec, wvar.data)
    in_prec = layer.get_input_variable().type.precision
    wa = _width(in_prec)                                  # streamed operand
    wb = _width(wprec)                                    # constant weight
    accum = layer.get_attr("accum_t")
    acc_prec = accum.precision if accum is not None else layer.get_output_variable().type.precision
    acc_w = _width(acc_prec)
    n_out = int(layer.get_attr("n_filt", 0) or layer.get_attr("n_out", 0) or w.shape[-1])
    if w.shape[-1] != n_out and w.shape[0] == n_out:
        w = np.moveaxis(w, 0, -1)  # the Resource strategy stores weights transposed (outputs first)
    cols = w.reshape(-1, n_out)
    nonzero = cols != 0
    ones, span = weight_bits(wprec, cols)
    lsb = 2.0 ** (int(getattr(wprec, "integer", 0)) - int(getattr(wprec, "width", 0)))
    digits = csd_digits(np.round(np.abs(cols) / lsb).astype(np.int64))   # signed digits: adders + 1
    # Effective product width: the product's bits above the accumulator's integer range wrap away,
    # so HLS narrows the multiplier to acc integer bits + the product's fractional bits.
    frac = _frac(in_prec) + _frac(wprec)
    acc_int = acc_w - _frac(acc_prec)
    folded = strategy != "resource"                       # Resource: weights in ROM, every product real
    if folded:
        shift = nonzero & (digits == 1)                   # +-2^k: a wire
        # Few signed digits: shift-and-add, for wide weight types (narrow quantized weights on
        # wide data stay on DSPs in the published QKeras designs).
        few = (digits <= c["lut_max_weight_digits"]) & (wb >= c["csd_min_weight_bits"])
        fabric = nonzero & (digits >= 2) & (few | (wa < c["dsp_min_data_bits"]) | (wb < c["dsp_min_weight_bits"]))
        dsp = nonzero & ~shift & ~fabric
    else:
        shift = np.zeros_like(nonzero)
        big = wa >= c["dsp_min_data_bits"] and wb >= c["dsp_min_weight_bits"]
        dsp = np.full_like(nonzero, big)
        fabric = np.full_like(nonzero, not big)
    eff_w = np.minimum(wa + np.where(folded, span, wb), acc_int + frac)
    pw = int(min(acc_w + max(0, frac - _frac(acc_prec)), wa + wb))   # product bits the adder tree sees
    d["multiplications"] = int(nonzero.sum())
    d["shift_only"] = int(shift.sum())
    d["zero_weights"] = int((~nonzero).sum())
    d["reuse_factor"] = rf
    d["strategy"] = strategy
    is_conv = cls.startswith("Conv") or cls.startswith("Pointwise")
    copies = 1
    if is_conv and not io_stream:
        out_px = int(np.prod(layer.get_output_variable().shape[:-1]))
        partitions = int(layer.get_attr("n_partitions", out_px) or out_px)
        copies = max(1, out_px // partitions)
    n_dsp, n_fab = int(dsp.sum()), int(fabric.sum())
    d["dsp_multipliers"] = d["DSP"] = math.ceil(n_dsp / rf) * copies      # ALLOCATION limit
    d["lut_multipliers"] = math.ceil(n_fab / rf) * copies
    d["multipliers"] = d["dsp_multipliers"] + d["lut_multipliers"]
    # Shift-and-add: x * (2^a +- 2^b ...) adds shifted copies of x, one adder of about the data
    # width per extra signed digit; a product of a non-constant weight (Resource) ~ wa*wb/2 LUTs.
    if folded:
        lut_mult = float(((digits - 1) * (wa + 1))[fabric].sum())
    else:
        lut_mult = n_fab * wa * wb / 2.0
    d["fabric_mult_bits"] = lut_mult * copies / rf
    # What the DSP products would cost in fabric: used when the part runs out of DSPs.
    d["dsp_as_fabric"] = float(((np.maximum(ones, 2) - 1) * (wa + 1))[dsp].sum()) * copies / rf if folded \
        else n_dsp * wa * wb / 2.0 * copies / rf
    # Adder trees: per output column, its non-zero terms (+ the bias when it is non-zero).
    bias = layer.weights.get("bias")
    bias_nz = (_fold(bias.type.precision, bias.data) != 0) if bias is not None else np.zeros(n_out, bool)
    terms = nonzero.sum(axis=0) + bias_nz.reshape(-1)[:n_out]
    adders = add_bits = max_levels = 0
    for t in terms:
        a, bits, lev = adder_tree_luts(int(t), pw, acc_w)
        adders, add_bits, max_levels = adders + a, add_bits + bits, max(max_levels, lev)
    d["adders"] = math.ceil(adders / (rf if strategy == "resource" else 1)) * copies
    # Pipeline: product (DSP or a shift-add level) then the adder tree, cut where the clock says.
    first = DELAYS_NS[family]["dsp"] if n_dsp else DELAYS_NS[family]["add"]
    cycles, cuts = pipeline(c, family, period, first, max_levels)
    mean_terms = max(1, int(round(float(terms.mean())))) if terms.size else 1
    level_bits = tree_level_bits(mean_terms, pw, acc_w)
    cut_bits = sum(level_bits[min(k, len(level_bits) - 1)] for k in cuts) * n_out
    # ALLOCATION limits multipliers only: with the Latency strategy every adder of the unrolled
    # accumulation stays (the published reuse-16 designs keep their reuse-1 adder LUTs); the
    # Resource strategy shares them too.
    share = rf if strategy == "resource" else 1
    _add(d, lut_mult=lut_mult * copies / rf, lut_add=add_bits * copies / share,
         ff_pipe=(cut_bits * copies / share) + n_out * acc_w, ff_io=0)
    d["pipeline_cycles"] = cycles
    if rf > 1:
        # Shared multipliers: an R:1 mux on the data operand and on the weight (a LUT6 is a 4:1
        # mux per bit; Resource reads the weight from its ROM instead, but routes each product
        # to one of the accumulators), and the partial sums kept in registers between passes.
        shared = d["multipliers"]
        _add(d, lut_reuse=shared * (wa + (wb if folded else acc_w)) * math.ceil((rf - 1) / 3),
             ff_pipe=shared * (wa + wb + acc_w))
        if io_stream and folded:
            # The stream kernels index the weight array with the reuse counter: HLS keeps the
            # non-zero weights in registers (csynth of the published reuse-16 CNN: ~16 FF per weight).
            _add(d, ff_reuse=int(nonzero.sum()) * wb)
    if strategy == "resource":
        # Weights in ROMs of depth R (nnet_dense_resource.h): block_factor words per address.
        mem = memory_cost(rf, math.ceil(w.size / rf) * wb, c)
        d["BRAM18"] += mem["BRAM18"]
        _add(d, lut_logic=mem["LUT"])
        d["notes"].append(f"weights in {mem['where']}")
    d["notes"].append(f"{n_dsp} products on DSP48, {n_fab} shift-add in LUTs, {int(shift.sum())} shifts")
    inp = layer.get_input_variable().shape
    if is_conv:
        fh = int(layer.get_attr("filt_height", 1) or 1)
        fw = int(layer.get_attr("filt_width", 1) or 1)
        n_chan = int(layer.get_attr("n_chan", inp[-1]))
        in_w = int(layer.get_attr("in_width", inp[-2] if len(inp) > 2 else inp[0]))
        in_h = int(layer.get_attr("in_height", inp[0] if len(inp) > 2 else 1))
        pixels = in_h * in_w
        if io_stream:
            # conv_2d_buffer_cl: one pixel per II=R loop iteration over every input pixel; the
            # last pixel's kernel (R cycles) and the pipeline follow the frame.
            per_pixel = rf
            if strategy == "resource":
                # nnet_dense_resource.h: the reuse loop is pipelined inside one pixel only, so
                # every pixel also pays its fill and drain: loop entry/exit (2), the weight ROM
                # read (2), the product and accumulation stages, the input/output transfer (2).
                per_pixel += 2 + 2 + cycles + 1 + 2
            d["ii_cycles"] = d["stream_cycles"] = pixels * per_pixel + c["frame_overhead_cycles"]
            d["depth_cycles"] = cycles + per_pixel
            if fh > 1:
                mem = memory_cost(in_w, wa, c)            # one ap_shift_reg per (row, channel)
                n_buf = (fh - 1) * n_chan
                d["BRAM18"] += n_buf * mem["BRAM18"]
                _add(d, lut_logic=n_buf * mem["LUT"])
                d["line_buffer"] = {"rows": fh - 1, "width_px": in_w, "channels": n_chan, "bits": wa,
                                    "where": mem["where"]}
            _add(d, ff_io=fh * fw * n_chan * wa)          # the kernel window registers
        else:
            # conv_2d_latency_cl: n_partitions iterations at II=R, one after the other.
            partitions = max(1, int(layer.get_attr("n_partitions", 1) or 1))
            d["ii_cycles"] = rf * partitions
            d["depth_cycles"] = d["ii_cycles"] + cycles - 1
    else:
        if io_stream:
            # DataPrepare reads n_in / pack packets at II=1, then one II=R kernel.
            packets = _dense_packets(layer.model.graph.get(layer.inputs[0]))
            d["depth_cycles"] = cycles + rf + 1
            d["ii_cycles"] = max(packets, rf, d["depth_cycles"])
            d["stream_cycles"] = packets
        else:
            # PIPELINE II=R with ALLOCATION limit=multiplier_limit: a pruned layer finishes its
            # DSP products in fewer cycles than R.
            # Under that limit HLS rewrites constants of up to three signed digits as shift-add.
            limit = max(1, math.ceil(cols.size / rf) - int((~nonzero).sum()) // rf)
            n_mul = int((dsp & (digits > c["alloc_max_weight_digits"])).sum())
            d["ii_cycles"] = min(rf, max(1, math.ceil(n_mul / limit))) if rf > 1 else 1
            d["depth_cycles"] = d["ii_cycles"] - 1 + cycles - 1
        _add(d, ff_io=int(np.prod(inp)) * wa if not io_stream else 0)


def _dense_packets(prev) -> int:
    """Reads a stream Dense makes per pattern: the packets of its input stream (one per pixel
    after a Flatten of a conv stream, one in total between dense layers)."""
    src = prev
    while src is not None and src.class_name == "Reshape":  # Flatten: no hardware in io_stream
        src = src.model.graph.get(src.inputs[0])
    if src is None:
        return 1
    shape = src.get_output_variable().shape
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def _pool_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    io_stream = ctx["io_stream"]
    inp = layer.get_input_variable().shape
    wa = _var_width(layer.get_input_variable())
    ph = int(layer.get_attr("pool_height", 2) or 2)
    pw = int(layer.get_attr("pool_width", ph) or ph)
    n_filt = int(layer.get_attr("n_filt", inp[-1]))
    in_w = int(layer.get_attr("in_width", inp[1] if len(inp) > 2 else inp[0]))
    in_h = int(layer.get_attr("in_height", inp[0] if len(inp) > 2 else 1))
    # max over ph*pw values per channel: ph*pw-1 comparators + a mux of wa bits each; io_parallel
    # unrolls it over every output pixel (nnet_pooling.h), io_stream does one pixel at a time.
    copies = 1 if io_stream else int(np.prod(layer.get_output_variable().shape[:-1]))
    _add(d, lut_logic=copies * n_filt * (ph * pw - 1) * 2 * wa, ff_io=copies * n_filt * ph * pw * wa)
    d["depth_cycles"] = 1
    if io_stream:
        d["ii_cycles"] = in_h * in_w                      # one pixel per clock (PIPELINE)
        if ph > 1:
            mem = memory_cost(in_w, wa, c)
            n_buf = (ph - 1) * n_filt
            d["BRAM18"] += n_buf * mem["BRAM18"]
            _add(d, lut_logic=n_buf * mem["LUT"])
            d["line_buffer"] = {"rows": ph - 1, "width_px": in_w, "channels": n_filt, "bits": wa,
                                "where": mem["where"]}
    else:
        d["ii_cycles"] = 1


def _elementwise_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    io_stream = ctx["io_stream"]
    out = layer.get_output_variable().shape
    n_chan = int(out[-1])
    wa = _var_width(layer.get_input_variable())
    wo = _var_width(layer.get_output_variable())
    per_px = n_chan if io_stream else int(np.prod(out))
    if d["class"] == "BatchNormalization":
        # nnet_batchnorm(_stream).h: one scale multiply and one bias add per element.
        scale_w = _width(layer.weights["scale"].type.precision) if "scale" in layer.weights else 16
        to_dsp = wa >= c["dsp_min_data_bits"] and scale_w >= c["dsp_min_weight_bits"]
        rf = int(layer.get_attr("reuse_factor", 1) or 1)
        inst = math.ceil(per_px / rf)
        d["multiplications"] = d["multipliers"] = inst
        if to_dsp:
            d["DSP"] = d["dsp_multipliers"] = inst
        else:
            d["lut_multipliers"] = inst
            _add(d, lut_mult=inst * wa * scale_w / 2.0)
        _add(d, lut_add=per_px * wo, ff_pipe=per_px * wo)
        d["depth_cycles"] = 2 if to_dsp else 1
    else:
        # ReLU + the cast to the quantized type (round, saturate): a compare and a mux per bit.
        _add(d, lut_logic=per_px * (wo + max(0, wa - wo) // 2), ff_io=per_px * wo if io_stream else 0)
        d["depth_cycles"] = 1 if io_stream else 0
    d["ii_cycles"] = (int(np.prod(out[:-1])) if len(out) > 1 else 1) if io_stream else 1


def _softmax_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    n = int(np.prod(layer.get_output_variable().shape))
    # nnet_activation(_stream).h softmax_stable: max, n exp lookups, sum, 1 inverse lookup,
    # n multiplies of two 18-bit table values (DSP48).
    d["BRAM18"] += c["softmax_tables_bram18"]
    d["DSP"] = d["dsp_multipliers"] = d["multipliers"] = d["multiplications"] = n
    _add(d, lut_logic=n * 18 * 3, ff_pipe=n * 18 * 2)
    dl = DELAYS_NS[ctx["family"]]
    chain = 2 * dl["bram"] + 2 * math.ceil(math.log2(max(n, 2))) * dl["add"] + dl["dsp"]
    d["depth_cycles"] = 1 + math.ceil(chain / (ctx["period"] * (1 - c["clock_uncertainty"])))
    d["ii_cycles"] = 1


# ----------------------------------------------------------------------------- the model

def estimate(hls_model, clock_period_ns: float | None = None, constants: dict | None = None,
             part: str | None = None, coef: dict | None = None) -> dict:
    """Resources, latency and throughput of a converted (not compiled) hls4ml model.

    Returns {"kind", "io_type", "clock_period_ns", "part", "family", "layers": [...], "fifos": [...],
    "total": {LUT, FF, DSP, BRAM18, multiplications, multipliers, dsp_multipliers,
    lut_multipliers}, "features", "latency_cycles", "ii_cycles", "latency_us", "ii_us",
    "patterns_per_s", "parts": {part: {LUT: fraction, ...}}, "error_bars": {quantity: median
    |leave-one-out error| on the calibration set}, "constants", "coefficients"}.
    """
    c = dict(DEFAULTS, **(constants or {}))
    coef = coef or coefficients()
    cfg = hls_model.config
    io_type = str(cfg.get_config_value("IOType") or "io_parallel")
    io_stream = io_type == "io_stream"
    if clock_period_ns is None:
        clock_period_ns = float(cfg.get_config_value("ClockPeriod") or 5.0)
    part = part or cfg.get_config_value("Part")
    split_fifos = str(cfg.get_config_value("Backend") or "").lower() == "vivado"
    ctx = {"io_stream": io_stream, "family": family_of(part), "period": float(clock_period_ns)}
    layers, fifos = [], []
    for layer in hls_model.get_layers():
        cls = layer.class_name
        d = _layer_dict(layer, cls)
        if cls in MULT_CLASSES:
            _mult_layer(layer, d, c, ctx)
        elif cls in ("Pooling2D", "Pooling1D"):
            _pool_layer(layer, d, c, ctx)
        elif cls in ELEMENTWISE_CLASSES:
            _elementwise_layer(layer, d, c, ctx)
        elif cls == "Softmax":
            _softmax_layer(layer, d, c, ctx)
        elif cls in ("Input", "Reshape", "Transpose"):
            # Input: a port. Reshape/Flatten: re-labels the stream, no hardware in hls4ml.
            layers.append(d)
            continue
        else:
            d["notes"].append(f"{cls}: not modelled (counted as a simple elementwise layer)")
            _elementwise_layer(layer, d, c, ctx)
        # Control per dataflow process (FSM, counters, stream handshakes); io_parallel inlines every
        # layer into one pipeline with one controller.
        _add(d, process=1 if io_stream else 0)
        layers.append(d)
        # The FIFO this layer writes into (not the network's output port).
        out = layer.get_output_variable()
        pragma = getattr(out, "pragma", None)
        if io_stream and isinstance(pragma, tuple) and pragma[0] == "stream" and \
                out not in hls_model.get_output_variables():
            depth = int(pragma[1])
            width = int(out.shape[-1]) * _var_width(out)
            if split_fifos:
                # Vivado HLS splits a stream of arrays into one FIFO per element (the published
                # csynth reports list layerN_out_V_data_K_V); Vitis HLS keeps one packed FIFO.
                one = memory_cost(depth, _var_width(out), c)
                mem = {k: one[k] * int(out.shape[-1]) for k in ("BRAM18", "LUT")} | {"where": one["where"]}
            else:
                mem = memory_cost(depth, width, c)
            fifos.append({"after": layer.name, "depth": depth, "width_bits": width, **mem})
    features = {} if io_stream else {"process": 1.0}
    for d in layers:
        for k, v in d["features"].items():
            features[k] = features.get(k, 0.0) + v
        d["LUT"] = round(linear(d["features"], coef["LUT"]))
        d["FF"] = round(linear(d["features"], coef["FF"]))
    features["lut_logic"] = features.get("lut_logic", 0.0) + sum(f["LUT"] for f in fifos)
    total = {k: sum(d[k] for d in layers) for k in
             ("DSP", "BRAM18", "multiplications", "multipliers", "dsp_multipliers", "lut_multipliers", "adders")}
    total["BRAM18"] += sum(f["BRAM18"] for f in fifos)
    # More multipliers than the part has DSPs: synthesis builds the rest in fabric.
    key = part_key(part)
    if key and total["DSP"] > PARTS[key]["DSP"]:
        over = total["DSP"] - PARTS[key]["DSP"]
        dsp_cost = sum(d.get("dsp_as_fabric", 0.0) for d in layers)
        dsp_mults = sum(d["dsp_multipliers"] for d in layers if "dsp_as_fabric" in d)
        # Vivado builds them as constant multipliers in fabric, one partial product per 1-bit of
        # the weight and one LUT per adder bit (counted, not fitted).
        features["lut_overflow"] = over * dsp_cost / max(dsp_mults, 1)
        total["DSP"] = PARTS[key]["DSP"]
    total["LUT"] = round(linear(features, coef["LUT"]) + features.get("lut_overflow", 0.0))
    total["FF"] = round(linear(features, coef["FF"]))
    active = [d for d in layers if d["ii_cycles"]]
    ii = max(d["ii_cycles"] for d in active)
    if io_stream:
        # The first layer reads the whole frame (the per-frame line-buffer fill included); every
        # layer's pipeline then follows the last pixel.
        first = active[0]
        latency = first.get("stream_cycles", first["ii_cycles"]) + sum(d["depth_cycles"] for d in active)
    else:
        latency = sum(d["depth_cycles"] for d in active) + 2   # + the input and output registers
    return finish({"kind": KIND_ESTIMATE, "io_type": io_type, "clock_period_ns": float(clock_period_ns),
                   "part": part, "family": ctx["family"], "layers": layers, "fifos": fifos, "total": total,
                   "features": features, "latency_cycles": int(latency), "ii_cycles": int(ii),
                   "error_bars": error_bars(), "constants": c, "coefficients": coef})


def finish(est: dict) -> dict:
    """Add the derived numbers (us, patterns/s, fraction of each part) to an estimate or report."""
    clk = est["clock_period_ns"]
    ii, lat = est.get("ii_cycles"), est.get("latency_cycles")
    est["clock_mhz"] = 1e3 / clk
    est["latency_us"] = lat * clk / 1e3 if lat is not None else None
    est["ii_us"] = ii * clk / 1e3 if ii is not None else None
    est["patterns_per_s"] = 1e9 / (ii * clk) if ii else None
    if str(est.get("kind", "")).startswith("estimate"):
        est.setdefault("error_bars", error_bars())
    est["parts"] = {part: {r: (est["total"][r] / n if est["total"].get(r) is not None else None)
                           for r, n in cap.items()}
                    for part, cap in PARTS.items()}
    return est


def from_vendor_report(report: dict, clock_period_ns: float | None = None) -> dict:
    """A vendor csynth report (firmware/vendor.parse_report, or its 'summary') in the estimate schema.

    kind: "synthesis (HLS csynth report)". Resources and cycles are the tool's; nothing per layer.
    """
    s = report.get("summary", report)
    clk = clock_period_ns or s.get("target_clock_ns") or 5.0
    total = {"LUT": s.get("LUT"), "FF": s.get("FF"), "DSP": s.get("DSP"),
             "BRAM18": s.get("BRAM_18K", s.get("BRAM18"))}
    est = {"kind": "synthesis (HLS csynth report)", "io_type": s.get("io_type"),
           "clock_period_ns": float(clk), "estimated_clock_ns": s.get("estimated_clock_ns"),
           "layers": [], "fifos": [], "total": total, "latency_cycles": s.get("latency_cycles"),
           "ii_cycles": s.get("interval_cycles")}
    return finish(est)


# ----------------------------------------------------------------------------- detectors

def keeps_up(est: dict, detector) -> bool:
    """True when the firmware's throughput reaches the detector's frame rate."""
    return margin(est, detector) >= 1.0


def margin(est: dict, detector) -> float:
    """patterns/s of the firmware over the detector's frames/s (>= 1: keeps up)."""
    det = DETECTORS[detector] if isinstance(detector, str) else detector
    return (est.get("patterns_per_s") or 0.0) / float(det["frame_rate_hz"])


# ----------------------------------------------------------------------------- helpers for models

def zero_smallest(model, sparsity: float, skip=()) -> None:
    """Zero the `sparsity` smallest-magnitude kernel weights of every Conv/Dense layer (in place):
    a stand-in for magnitude pruning (quant/prune.py) when only the resources matter."""
    for layer in model.layers:
        if layer.name in skip or not any("kernel" in v.name for v in layer.weights):
            continue
        weights = layer.get_weights()
        k = weights[0]
        if sparsity > 0:
            k[np.abs(k) <= np.quantile(np.abs(k), sparsity)] = 0.0
        layer.set_weights(weights)



# ----------------------------------------------------------------------------- printing

def pm(est: dict, quantity: str) -> str:
    """'+- 35 %': the quantity's leave-one-out error bar, '' for synthesis numbers or no fit."""
    if not str(est.get("kind", "")).startswith("estimate"):
        return ""
    bar = (est.get("error_bars") or {}).get(quantity)
    return "" if bar is None else f" +- {100 * bar:.0f} %"


def with_error(est: dict, quantity: str) -> str:
    """A number with its error bar, e.g. '108,204 LUT +- 35 %'."""
    value = est["total"][quantity] if quantity in RESOURCES else est.get(quantity)
    unit = {"latency_cycles": "cycles latency", "ii_cycles": "cycles II", "BRAM18": "BRAM18"}.get(quantity, quantity)
    return f"{value:,} {unit}{pm(est, quantity)}"


def summary_line(est: dict) -> str:
    return (", ".join(with_error(est, q) for q in RESOURCES) +
            f"; {with_error(est, 'ii_cycles')}, {with_error(est, 'latency_cycles')} "
            f"({est['latency_us']:.2f} us) at {est['clock_mhz']:.0f} MHz; "
            f"{est['patterns_per_s']:,.0f} patterns/s [{est['kind']}]")
