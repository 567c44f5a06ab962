"""Calibration of the estimator against published hls4ml syntheses, with leave-one-out errors.

    designs = load_designs()                 # ccstae/firmware/calibration/designs.toml (+ vendor_designs.toml)
    table = calibrate(designs)               # rebuild + convert each (no compile), fit, leave-one-out
    print(format_table(table))
    save_fit(table)                          # ccstae/firmware/calibration/fit.json: constants + error bars

The estimator (ccstae/firmware/estimate.py) counts hardware from the hls4ml graph: multipliers by where
they go (DSP48 or fabric), adder-tree bits, registers at the pipeline cuts the clock period
forces, memories. A few linear coefficients turn those counts into LUTs and FFs (synthesis packs
and trims logic); they are fitted here by non-negative least squares on relative errors. The
error bars are honest: each design is estimated with coefficients fitted on the others only.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

from ccstae.core.outputs import atomic_write
from ccstae.core.errors import UserError

from ccstae.firmware import estimate as E

DATA_DIR = Path(__file__).resolve().parent / "calibration"
DESIGNS_FILE = DATA_DIR / "designs.toml"
VENDOR_FILE = DATA_DIR / "vendor_designs.toml"
FIT_FILE = DATA_DIR / "fit.json"
QUANTITIES = ("LUT", "FF", "DSP", "BRAM18", "latency_cycles", "ii_cycles")
REQUIRED = ("name", "source", "part", "clock_period_ns", "io_type", "strategy", "reuse_factor", "precision",
            "input_shape", "layers", "published")


# ----------------------------------------------------------------------------- the data file

def load_designs(path=DESIGNS_FILE, vendor_path=VENDOR_FILE) -> list[dict]:
    """The calibration designs: the published ones, then any vendor reports added on this machine."""
    designs = []
    for p in (Path(path), Path(vendor_path)):
        if not p.exists():
            continue
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"{p}: not valid TOML ({err})") from None
        for d in data.get("design", []):
            missing = [k for k in REQUIRED if k not in d]
            if missing:
                raise UserError(f"{p}: design {d.get('name', '?')!r} lacks {', '.join(missing)}")
            designs.append(d)
    return designs


def add_report(est: dict, summary: dict, name: str, source: str, path=VENDOR_FILE) -> dict:
    """Add a vendor csynth report to the calibration set (vendor_designs.toml next to designs.toml).

    est: the estimator's output for the same project (its feature counts are what the fit uses;
    the graph is not rebuilt). summary: firmware/vendor.summarize_csynth's dict. Resources are HLS
    csynth numbers (resources_from = "csynth": their LUTs run ~2x above synthesis). Returns the entry.
    """
    published = {"LUT": summary.get("LUT"), "FF": summary.get("FF"), "DSP": summary.get("DSP"),
                 "BRAM18": summary.get("BRAM_18K", summary.get("BRAM18")),
                 "latency_cycles": summary.get("latency_cycles"), "ii_cycles": summary.get("interval_cycles")}
    entry = {"name": name, "source": source, "part": est.get("part") or "unknown",
             "clock_period_ns": float(est["clock_period_ns"]), "io_type": est["io_type"],
             "strategy": "from graph", "reuse_factor": 0, "precision": "from graph", "input_shape": [],
             "layers": [], "resources_from": "csynth",
             "published": {k: v for k, v in published.items() if v is not None},
             "features": est_record(est)}
    path = Path(path)
    old = tomllib.loads(path.read_text()).get("design", []) if path.exists() else []
    entries = [d for d in old if d["name"] != name] + [entry]
    atomic_write(path, "# Vendor reports of this project's designs (ccstae.firmware.calibration.add_report).\n\n"
                 + "\n".join(_toml_entry(d) for d in entries))
    return entry


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_entry(d: dict) -> str:
    return "[[design]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in d.items())


# ----------------------------------------------------------------------------- rebuild a design

def build_design(design: dict, seed: int = 0):
    """The design's network in Keras/QKeras with seeded random weights at its published sparsity.

    Float kernels are normal with sigma weight_scale / 2.5, clipped to +-weight_scale (trained
    weights are bell-shaped); QKeras kernels uniform over the quantizer range; init = "glorot":
    Keras' default initialiser (the untrained designs). Batch-norm statistics near 1 so folded
    kernels keep their zeros.
    """
    from qkeras import QActivation, QConv2DBatchnorm, QDense
    from tensorflow import keras

    x = inp = keras.Input(tuple(design["input_shape"]), name="input_1")
    for i, spec in enumerate(design["layers"]):
        kind, name = spec["kind"], spec.get("name", f"{spec['kind']}_{i}")
        bits = spec.get("bits", 8)
        q = f"quantized_bits({bits},0,alpha=1)"
        if kind == "dense":
            x = keras.layers.Dense(spec["units"], activation=spec.get("activation"),
                                   use_bias=spec.get("bias", True), name=name)(x)
        elif kind == "conv2d":
            x = keras.layers.Conv2D(spec["filters"], spec["kernel"], activation=spec.get("activation"),
                                    use_bias=spec.get("bias", True), name=name)(x)
        elif kind == "qdense":
            x = QDense(spec["units"], kernel_quantizer=q, bias_quantizer=q, use_bias=spec.get("bias", True),
                       name=name)(x)
        elif kind == "qconv2d_bn":
            x = QConv2DBatchnorm(spec["filters"], spec["kernel"], kernel_quantizer=q, bias_quantizer=q,
                                 use_bias=True, name=name)(x)
        elif kind == "qrelu":
            x = QActivation(f"quantized_relu({bits})", name=name)(x)
        elif kind == "maxpool2d":
            x = keras.layers.MaxPooling2D(spec["size"], name=name)(x)
        elif kind == "flatten":
            x = keras.layers.Flatten(name=name)(x)
        elif kind == "batchnorm":
            x = keras.layers.BatchNormalization(name=name)(x)
        elif kind in ("relu", "softmax"):
            x = keras.layers.Activation(kind, name=name)(x)
        else:
            raise UserError(f"{DESIGNS_FILE}: design {design['name']!r}: unknown layer kind {kind!r}")
    model = keras.Model(inp, x, name=design["name"])
    set_random_weights(model, design, seed)
    return model


def set_random_weights(model, design: dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sparsity = float(design.get("sparsity", 0.0))
    skip = set(design.get("sparsity_skip", []))
    scale = float(design.get("weight_scale", 1.0))
    for layer in model.layers:
        if not layer.weights:
            continue
        new = []
        for v in layer.weights:
            name, shape = v.name.split("/")[-1], tuple(v.shape)
            if "kernel" in name:
                if design.get("init") == "glorot":
                    limit = math.sqrt(6.0 / (int(np.prod(shape[:-1])) + shape[-1]))
                    k = rng.uniform(-limit, limit, shape)
                elif layer.__class__.__name__.startswith("Q"):
                    k = rng.uniform(-1, 1, shape)         # QAT spreads weights over the quantizer range
                else:                                     # trained float weights: bell-shaped, |w| <= scale
                    k = np.clip(rng.normal(0.0, scale / 2.5, shape), -scale, scale)
                if sparsity > 0 and layer.name not in skip:
                    k[np.abs(k) < np.quantile(np.abs(k), sparsity)] = 0.0
                new.append(k)
            elif "gamma" in name or "variance" in name:
                new.append(rng.uniform(0.8, 1.2, shape))
            else:
                new.append(rng.uniform(-0.1, 0.1, shape))
        layer.set_weights(new)


def convert_design(model, design: dict, out_dir):
    """hls4ml 1.3 conversion (Vivado backend) with the design's part, clock, io type, reuse,
    strategy, precision and the published flow's accumulator width. Writes nothing but the
    project skeleton; never compiles."""
    import hls4ml

    prec = design["precision"]
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado",
                                               default_precision=prec)
    cfg["Model"]["ReuseFactor"] = int(design["reuse_factor"])
    cfg["Model"]["Strategy"] = design["strategy"]
    for name, layer_cfg in cfg["LayerName"].items():
        p = layer_cfg.get("Precision")
        if isinstance(p, dict):
            for key in list(p):
                # The published flows had no precision inference, except that a max pooling
                # (it only selects values) and a flatten (no hardware) pass their input type on.
                if p[key] == "auto" and not name.startswith(("maxpool", "flatten")):
                    p[key] = prec
            if "accum" in p or any(k in p for k in ("weight", "bias")):
                p["accum"] = design.get("accum", prec)
        if "ReuseFactor" in layer_cfg:
            layer_cfg["ReuseFactor"] = int(design["reuse_factor"])
        if "softmax" in name.lower():
            layer_cfg["Strategy"] = "Stable"
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(out_dir), backend="Vivado", part=design["part"],
        clock_period=float(design["clock_period_ns"]), io_type=design["io_type"])


def est_record(est: dict) -> dict:
    """What the fit needs of an estimate: its feature counts and structural numbers."""
    if "features" in est and "total" not in est:          # already a record
        return est
    t = est["total"]
    return {"features": dict(est["features"]), "DSP": t["DSP"], "BRAM18": t["BRAM18"],
            "latency_cycles": est["latency_cycles"], "ii_cycles": est["ii_cycles"]}


def design_record(design: dict, seed: int = 0) -> dict:
    """Rebuild, convert and estimate one design (with the default coefficients): est_record."""
    if "features" in design:           # a vendor report: stored as features already
        return design["features"]
    with tempfile.TemporaryDirectory() as tmp:
        hls_model = convert_design(build_design(design, seed), design, Path(tmp) / "prj")
        return est_record(E.estimate(hls_model, part=design["part"]))


# ----------------------------------------------------------------------------- fit and leave-one-out

def fit_coefficients(records: list[dict], targets: list[float], names: tuple, bounds: dict | None = None) -> dict:
    """Least squares of sum_k c_k * feature_k on relative error (each design counts alike), each
    coefficient inside its physical bounds (estimate.BOUNDS; non-negative when none are given)."""
    from scipy.optimize import lsq_linear

    a = np.array([[r["features"].get(n, 0.0) for n in names] for r in records], float)
    y = np.asarray(targets, float)
    w = 1.0 / y
    scale = np.maximum(a.max(axis=0), 1e-9)   # condition the columns
    lo = np.array([(bounds or {}).get(n, (0.0, np.inf))[0] for n in names]) * scale
    hi = np.array([(bounds or {}).get(n, (0.0, np.inf))[1] for n in names]) * scale
    res = lsq_linear(a * w[:, None] / scale, np.ones_like(y), bounds=(lo, hi))
    return {n: float(v / s) for n, v, s in zip(names, res.x, scale)}


def predict(record: dict, quantity: str, coef: dict) -> float:
    if quantity in E.FITTED:
        return E.linear(record["features"], coef[quantity]) + _fixed(record, quantity)
    return float(record[quantity])


def _fixed(record: dict, quantity: str) -> float:
    """The part of a quantity that is counted, not fitted (LUT multipliers beyond the part's DSPs)."""
    return record["features"].get("lut_overflow", 0.0) if quantity == "LUT" else 0.0


def calibrate(designs=None, seed: int = 0, progress: bool = False) -> dict:
    """Estimate every design, fit the coefficients on all, and leave each design out in turn.

    Returns {"rows": [{name, family, io_type, clock_period_ns, quantity: {published, estimate, loo,
    error, loo_error}}], "coefficients": fitted on all, "loo_median": {quantity: median |loo error|},
    "seconds"}. error = (estimate - published) / published with all designs in the fit; loo_error
    with the design left out of the fit (the honest one).
    """
    t0 = time.time()
    designs = load_designs() if designs is None else designs
    records = []
    for d in designs:
        if progress:
            print(f"  converting {d['name']} ...", flush=True)
        records.append(design_record(d, seed))
    coef = fit_all(designs, records)
    rows = []
    for i, (d, r) in enumerate(zip(designs, records)):
        others = [j for j in range(len(designs)) if j != i]
        loo_coef = fit_all([designs[j] for j in others], [records[j] for j in others])
        row = {"name": d["name"], "family": E.family_of(d["part"]), "io_type": d["io_type"],
               "clock_period_ns": d["clock_period_ns"], "resources_from": d.get("resources_from", "?")}
        for q in QUANTITIES:
            pub = d["published"].get(q)
            est, loo = predict(r, q, coef), predict(r, q, loo_coef)
            row[q] = {"published": pub, "estimate": est, "loo": loo,
                      "error": _rel(est, pub), "loo_error": _rel(loo, pub)}
        rows.append(row)
    errs = {q: [abs(r[q]["loo_error"]) for r in rows if r[q]["loo_error"] is not None] for q in QUANTITIES}
    loo_median = {q: _median(e) for q, e in errs.items()}
    # The printed error bar: the root mean square of the leave-one-out errors (one sigma). It keeps
    # the tail that a median hides when most designs are exact and a few are not.
    loo_rms = {q: float(np.sqrt(np.mean(np.square(e)))) if e else None for q, e in errs.items()}
    return {"rows": rows, "coefficients": coef, "loo_median": loo_median, "loo_rms": loo_rms, "seed": seed,
            "records": records, "seconds": time.time() - t0}


def fit_all(designs: list[dict], records: list[dict], bounds: dict | None = None) -> dict:
    """Coefficients for every fitted quantity (estimate.FITTED), within `bounds` (default estimate.BOUNDS)."""
    bounds = E.BOUNDS if bounds is None else bounds
    coef = {}
    for q in E.FITTED:
        pairs = [(r, d["published"][q] - _fixed(r, q)) for d, r in zip(designs, records) if d["published"].get(q)]
        coef[q] = fit_coefficients([p[0] for p in pairs], [p[1] for p in pairs], E.FEATURES[q], bounds.get(q))
    return coef


def _rel(est, pub):
    return None if pub in (None, 0) or est is None else (est - pub) / pub


def _pct_or_dash(x) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _median(xs):
    return float(np.median(xs)) if xs else None


def save_fit(table: dict, path=FIT_FILE) -> None:
    """Write the fitted coefficients and the leave-one-out error bars the estimator loads."""
    out = {"coefficients": table["coefficients"], "loo_median_abs_error": table["loo_median"],
           "loo_rms_error": table["loo_rms"],
           "designs": [r["name"] for r in table["rows"]],
           "note": "written by bench/bench_estimate.py --refit from ccstae/firmware/calibration/designs.toml"}
    atomic_write(Path(path), json.dumps(out, indent=1) + "\n")


def format_table(table: dict) -> str:
    """Per-design published vs leave-one-out estimate, and the median |error| per quantity."""
    def num(x):
        return "-" if x is None else f"{x:,.0f}"

    def pct(x):
        return "-" if x is None else f"{100 * x:+.0f} %"

    head = ["design", "family", "io", "clock"] + [f"{q} pub / LOO est (err)" for q in QUANTITIES]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in table["rows"]:
        cells = [r["name"], r["family"], r["io_type"].replace("io_", ""), f"{r['clock_period_ns']:g} ns"]
        for q in QUANTITIES:
            c = r[q]
            cells.append(f"{num(c['published'])} / {num(c['loo'])} ({pct(c['loo_error'])})")
        lines.append("| " + " | ".join(cells) + " |")
    for fam in sorted({r["family"] for r in table["rows"]}):
        rows = [r for r in table["rows"] if r["family"] == fam]
        lines.append(f"| median abs LOO error, {fam} ({len(rows)}) | | | | " + " | ".join(
            _pct_or_dash(_median([abs(r[q]["loo_error"]) for r in rows if r[q]["loo_error"] is not None]))
            for q in QUANTITIES) + " |")
    for key, label in (("loo_median", "median abs LOO error, all"), ("loo_rms", "error bar: rms LOO error")):
        lines.append(f"| {label} | | | | " + " | ".join(
            "-" if table[key][q] is None else f"{100 * table[key][q]:.0f} %" for q in QUANTITIES) + " |")
    return "\n".join(lines)
