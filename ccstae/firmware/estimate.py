"""FPGA resource and latency estimates from a converted hls4ml model, without compile() or Vivado.

    hls_model = convert.convert(qencoder, spec, out_dir)
    est = estimate(hls_model)              # LUT/FF/DSP/BRAM18, latency, II, patterns/s, % of parts
    keeps_up(est, DETECTORS["arina"])      # True when the firmware is faster than the camera

Every number here is an *estimate*: est["kind"] == "estimate (hls4ml graph model)". Numbers from a
vendor csynth report (ccstae/firmware/vendor.py) go through `from_vendor_report` into the same schema
with kind "synthesis (...)", so a table never mixes the two silently.

How the estimate is built: ccstae/firmware/hardware.py counts, layer by layer, what hls4ml 1.3 writes
(products on DSP48s, in shift-and-add logic or as wires; adder trees; registers at the pipeline
cuts the clock period forces; muxes and registers of reuse; line buffers, FIFOs and ROMs; cycles).
DSPs, BRAM18, latency and II are those counts. LUTs and FFs are linear in them, with coefficients
fitted (inside physical bounds, BOUNDS) on published syntheses of hls4ml designs
(ccstae/firmware/calibration/designs.toml, ccstae/firmware/calibration.py) and stored in
ccstae/firmware/calibration/fit.json with each quantity's leave-one-out error, which every estimate
carries as est["error_bars"] and prints ("108,204 LUT +- 33 %"). Multipliers beyond the part's
DSPs are built in fabric (counted, not fitted). The rules and delays in DEFAULTS/fabric.DELAYS_NS are
set by hand from HLS reports, not fitted; bench/bench_estimate.py prints the calibration table.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ccstae.firmware import hardware as H

KIND_ESTIMATE = "estimate (hls4ml graph model)"
RESOURCES = ("LUT", "FF", "DSP", "BRAM18")
QUANTITIES = ("LUT", "FF", "DSP", "BRAM18", "latency_cycles", "ii_cycles")
FIT_FILE = Path(__file__).resolve().parent / "calibration" / "fit.json"

# LUTs and FFs are linear in hardware counts ("features"); the coefficients are fitted on the
# published designs of ccstae/firmware/calibration/designs.toml (ccstae/firmware/calibration.py) and loaded from
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


# ----------------------------------------------------------------------------- the model

def estimate(hls_model, clock_period_ns: float | None = None, constants: dict | None = None,
             part: str | None = None, coef: dict | None = None) -> dict:
    """Resources, latency and throughput of a converted (not compiled) hls4ml model.

    Returns {"kind", "io_type", "clock_period_ns", "part", "family", "layers": [...], "fifos": [...],
    "total": {LUT, FF, DSP, BRAM18, multiplications, multipliers, dsp_multipliers,
    lut_multipliers}, "features", "latency_cycles", "ii_cycles", "latency_us", "ii_us",
    "patterns_per_s", "parts": {part: {LUT: fraction, ...}}, "error_bars": {quantity: rms
    leave-one-out relative error on the calibration set}, "constants", "coefficients"}.
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
        d = H.count_layer(layer, c, ctx)
        layers.append(d)
        if d["class"] in H.NO_HARDWARE:
            continue
        fifo = H.stream_fifo(layer, hls_model, c, split_fifos) if io_stream else None
        if fifo:
            fifos.append(fifo)
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
    a stand-in for magnitude pruning (ccstae/quant/prune.py) when only the resources matter."""
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
