"""The centroid core in `make hls` (issue 23): its reference from the training cube, both
C-simulations from raw counts on the test cubes, its strain accuracy and its estimate.

    c = check_core(cfg, train_cube, tests, prj, level_name)   # -> summary.json's "centroid"
    csim_line(c); accuracy_line(c, "w=0")                    # its lines in make hls's summary

Nothing here needs a trained encoder: the stream the core reads (binning, crop, central mask,
counter width) is measured from the training cube by model/preprocess.fit_preprocess, on the same
sample the float run measures its own from, and the reference disks come from the mean of the
training cube's binned counts (firmware/centroid.fit_core), without labels. So `ccstae hls --core
centroid` runs without training; `make hls` records whether the encoder's front end reads the
very same stream (same_stream).
"""
from __future__ import annotations

import hashlib
import time

import numpy as np

from ccstae.analysis.evaluate import calibration, calibration_text, truth_maps
from ccstae.core.data_io import open_cube
from ccstae.firmware import centroid as C
from ccstae.firmware import centroid_csim as CS
from ccstae.firmware import centroid_estimate
from ccstae.firmware.csim import compare_outputs
from ccstae.model import preprocess as pp
from ccstae.physics.strain import MAPS, flat_map_mae, mae, strain_maps

LABEL = "centroid core"
TRAIN_SAMPLE = 2000  # patterns the preprocessing is measured on (as model/train_setup.fit_preprocess)


def stream_params(cfg: dict, train_cube) -> tuple:
    """(PreprocessParams of the stream the core reads, the measured figures, the mean binned
    pattern) from the training cube, streamed: one pass, no labels."""
    m = cfg["model"]
    binning, crop = int(m["input_binning"]), int(m["input_crop"])
    with open_cube(train_cube) as cube:
        step = max(1, len(cube) // TRAIN_SAMPLE)
        sample, total, n = [], 0, 0
        for start, b in cube.iter_batches(1024):
            sample.append(b[(-start) % step::step])  # the patterns i with i % step == 0
            counts = pp.to_counts(b, float(cfg["noise"]["counts"]), int(cfg["quant"]["count_bits"]))
            total = total + pp.crop_patterns(pp.bin_patterns(counts, binning), crop).sum(0)
            n += len(b)
    sample = np.concatenate(sample)
    pre = pp.fit_preprocess(sample, binning, crop, m["central_mask"])
    size = pp.input_size(sample.shape[-1], binning, crop)
    mask = pp.mask_image(size, pre["mask"]) > 0 if pre["mask"].get("kind", "none") != "none" else None
    params = pp.PreprocessParams(pattern=sample.shape[-1], binning=binning, crop=crop, scale=pre["scale"],
                                 counts_per_unit=float(cfg["noise"]["counts"]), mask=mask,
                                 count_bits=int(cfg["quant"]["count_bits"]))
    # The mask is a product: the mean of the masked counts is the masked mean.
    return params, pre["measured"], np.where(params.keep(), total / n, 0.0)


def stream_description(params: pp.PreprocessParams) -> dict:
    """The binned, cropped, masked stream a front end hands on, as numbers to compare: two front
    ends with equal descriptions feed their cores the same counts."""
    keep = params.keep()
    return {"pattern": params.pattern, "binning": params.binning, "crop": params.crop, "size": params.size,
            "count_bits": params.count_bits, "counts_per_unit": float(params.counts_per_unit),
            "masked_pixels": int((~keep).sum()), "mask_sha256": hashlib.sha256(keep.tobytes()).hexdigest()}


def symmetry_period(core: C.CoreParams) -> float:
    """The lattice's rotational period (radians) from the reference disks: the smallest turn of
    2 pi / 6, / 4 or / 2 that maps every disk onto one, within a tenth of the shortest disk vector
    (the mean of a rotated, strained sample is not an exact lattice). theta's errors are taken
    modulo it."""
    g = core.disks - np.asarray(core.centre)
    tolerance = 0.1 * np.hypot(*g.T).min()
    for folds in (6, 4, 2):
        a = 2 * np.pi / folds
        turned = g @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        if np.all(np.min(np.hypot(*(turned[:, None] - g[None]).transpose(2, 0, 1)), 1) < tolerance):
            return a
    return np.pi


def saturated_frames(core: C.CoreParams, params: pp.PreprocessParams) -> np.ndarray:
    """Raw-count frames that push every sum to its largest: all at the counter's maximum, the
    maximum in every disk's window and zero around it (the largest numerators and denominators),
    a checkerboard of maximum and zero, all zero, one hot pixel."""
    top, p, b, crop = (1 << params.count_bits) - 1, params.pattern, params.binning, params.crop
    rows, cols = np.mgrid[:p, :p] // b - crop  # the binned, cropped pixel each raw pixel lands in
    near = np.min(np.hypot(rows[..., None] - core.disks[:, 0], cols[..., None] - core.disks[:, 1]), -1)
    hot = np.zeros((p, p), np.int64)
    r, c = (np.rint(core.disks[0]).astype(int) + crop) * b
    hot[r, c] = top
    return np.stack([np.full((p, p), top), np.where(near <= core.inner - 0.6, top, 0),
                     ((rows + cols) % 2) * top, np.zeros((p, p), np.int64), hot]).astype(np.int64)


def check_core(cfg: dict, train_cube, tests: dict, prj, level_name=str) -> dict:
    """The core measured on the training cube, written into prj and C-simulated from raw counts
    both ways: the ctypes library on every test pattern, the g++ testbench on [firmware]
    centroid_testbench_patterns_per_level of each level; plus saturated frames through both.
    Returns summary.json's "centroid" entry."""
    t0 = time.time()
    params, measured, mean = stream_params(cfg, train_cube)
    core = C.fit_core(mean, params.max_binned.bit_length(), measured)
    period = symmetry_period(core)
    CS.write_core(prj, core)
    CS.build_objects(prj)
    lib = CS.CompiledCore(prj)
    tb_per_level = int(cfg["firmware"].get("centroid_testbench_patterns_per_level", 1000))
    checks, tb_frames, accuracy, calib, flat = [], [], {}, {}, {}
    for w, path in tests.items():
        with open_cube(path) as cube:
            counts = pp.to_counts(cube.read_patterns(np.arange(len(cube))), params.counts_per_unit,
                                  params.count_bits)
            scan, gt = cube.shape[:2], cube.ground_truth
        binned = pp.bin_counts(counts, params)
        raw = C.core_outputs(core, binned)
        checks.append((level_name(w), compare_outputs(raw, lib.run(binned))))
        tb_frames.append(counts[np.unique(np.linspace(0, len(counts) - 1, min(tb_per_level, len(counts))).astype(int))])
        if gt is not None:
            truth = truth_maps(gt)
            pred = strain_maps(C.core_matrices(core, raw).reshape(*scan, 2, 2))
            accuracy[level_name(w)] = mae(pred, truth, period)
            calib[level_name(w)] = calibration(pred, truth, period)
            flat[level_name(w)] = flat_map_mae(truth, period)
    edges = saturated_frames(core, params)
    checks.append(("saturated frames", compare_outputs(C.core_outputs(core, pp.bin_counts(edges, params)),
                                                       lib.run(pp.bin_counts(edges, params)))))
    CS.make_tb_data(prj, core, params, np.concatenate(tb_frames + [edges]))
    tb = CS.run_testbench(prj)
    n = sum(r.n_patterns for _, r in checks)
    spec = cfg["firmware"]
    return {
        "core": {"disks": len(core.disks), "box": core.box, "inner": round(core.inner, 3), "ring": round(core.ring, 3),
                 "sum_bits": core.sum_bits, "widths": core.widths(), "period_deg": round(float(np.degrees(period)), 1)},
        "stream": stream_description(params),
        "csim": {"patterns": n, "exact_fraction": sum(r.exact_fraction * r.n_patterns for _, r in checks) / n,
                 "per_check": {label: {"patterns": r.n_patterns, "exact_fraction": r.exact_fraction}
                               for label, r in checks},
                 "mismatches": [f"{label}: pattern {i} output {j}: reference {q!r} firmware {f!r}"
                                for label, r in checks for i, j, q, f in r.mismatches[:5]],
                 "testbench_patterns": tb.n_patterns, "testbench_exact_fraction": tb.exact_fraction,
                 "testbench_mismatches": [f"pattern {i} output {j}: reference {q!r} firmware {f!r}"
                                          for i, j, q, f in tb.mismatches[:10]]},
        "accuracy": accuracy, "calibration": calib, "flat map": flat,
        "estimate": centroid_estimate.summary(core, {"pattern": params.pattern, "binning": params.binning},
                                              float(spec["clock_period_ns"]), str(spec["part"]),
                                              cfg.get("sweep", {}).get("detectors", centroid_estimate.DETECTORS)),
        "seconds": round(time.time() - t0, 1),
    }


def problems(c: dict) -> list[str]:
    """What makes `make hls` fail on the core: either C-simulation not bit-exact."""
    out = []
    for key, what in (("exact_fraction", "ctypes library"), ("testbench_exact_fraction", "testbench")):
        if c["csim"][key] != 1.0:
            out.append(f"C-simulation of the centroid core ({what}) is not bit-exact "
                       f"({100 * c['csim'][key]:.4f} % of outputs)")
    return out


def csim_line(c: dict) -> str:
    s = c["csim"]
    return (f"centroid core from raw counts vs its integer reference (firmware/centroid.py): ctypes {s['patterns']} "
            f"patterns {100 * s['exact_fraction']:.2f} %, testbench {s['testbench_patterns']} patterns "
            f"{100 * s['testbench_exact_fraction']:.2f} % bit-exact; {c['core']['disks']} disks, box {c['core']['box']}")


def accuracy_line(c: dict, w: str, width: int = 13) -> str | None:
    """The core's row of make hls's MAE table at level w (None without ground truth)."""
    m = c.get("accuracy", {}).get(w)
    if m is None:
        return None
    cal = c.get("calibration", {}).get(w)
    return (f"{w:>5} {LABEL:>{width}} " + " ".join(f"{m[k]:8.5f}" if k != "theta" else f"{m[k]:8.3f}" for k in MAPS)
            + (f"  {calibration_text(cal)}" if cal else ""))
