"""Whole simulated scans, streamed to disk in our HDF5 layout (ccstae/core/data_io.py), by either
engine: `simulate_scan` draws the sample (ccstae/physics/simulate.py: ground truth, kinematic
patterns) or hands the rows to the multislice engine (ccstae/physics/multislice.py), adds
distortions and noise; `simulate_training_sample` is a config's clean training cube;
`clean_multislice` the clean multislice run that noisy multislice scans (and the noise floors,
ccstae/analysis/floor.py) share.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ccstae.core.errors import UserError
from ccstae.physics.simulate import ground_truth_maps, render_patterns, sim_params



def clean_multislice(cfg, out_path, rows, progress) -> Path:
    """The clean multislice scan of cfg (seed set) cached in out_path's folder; simulated if absent."""
    import hashlib

    from ccstae.core.outputs import file_lock

    from ccstae.physics.multislice import RENDER_VERSION

    key = json.dumps({"simulate": cfg["simulate"], "rows": rows, "render": RENDER_VERSION}, sort_keys=True)
    path = Path(out_path).parent / f".ms-clean-{hashlib.sha1(key.encode()).hexdigest()[:12]}.h5"
    # Test cubes of one sample at several noise levels share this run, and a study makes them in
    # parallel: one worker renders it, the others wait for the lock and reuse it.
    with file_lock(path.parent / f"{path.name}.lock"):
        if not path.exists():  # overwrite: a partial run left by a killed worker restarts
            simulate_scan(cfg, path, clean=True, overwrite=True, progress=progress, rows=rows)
    return path


def _noisy_copy(clean_path, out_path, attrs, p, noise_w, counts, gamma, overwrite, progress,
                distortion=None) -> Path:
    """Noisy copy of a clean cube, row by row, with its ground truth and detected fractions; noise_w None:
    no noise. distortion: a distort.Distortion applied before the noise (geometry) and after (detector)."""
    import h5py

    from ccstae.core import cube_writer, data_io
    from ccstae.physics import noise

    with h5py.File(clean_path, "r") as src, \
            cube_writer.CubeWriter(out_path, src["datacube"].shape, attrs=attrs, overwrite=overwrite) as w:
        for r in tqdm(range(src["datacube"].shape[0]), desc="noise", unit="row", disable=not progress,
                      dynamic_ncols=True):
            rng = np.random.default_rng([p.seed, 2, r])
            row = src["datacube"][r]
            if distortion is not None:
                row = distortion.warp(row, np.full(len(row), r), np.arange(len(row)))
            if noise_w is not None:
                row = noise.add_noise(row, noise_w, counts, rng, gamma_frac=gamma)
            if distortion is not None:
                row = distortion.detect(row)
            w.write_rows(r, row[None])
        # In the user frame whatever the cached clean cube's age (data_io.user_frame_ground_truth)
        w.write_ground_truth(data_io.user_frame_ground_truth(
            {k: src["ground_truth"][k][()] for k in src["ground_truth"]}, dict(src.attrs)))
        if "detected_fraction" in src:
            w.file.create_dataset("detected_fraction", data=src["detected_fraction"][()])
        if distortion is not None:
            distortion.write_truth(w.file)
    return Path(out_path)


def simulate_scan(cfg: dict, out_path, noise_w: float = 0.0, counts: float | None = None, seed: int | None = None,
                  clean: bool = False, overwrite: bool = False, progress: bool = True, rows: int | None = None) -> Path:
    """Simulate a scan into our HDF5 layout (ccstae/core/data_io.py), one scan row at a time.

    cfg: a whole config (load_config). seed (default simulate.seed) picks the sample, the
    jitter and the noise draws. clean=True writes noise-free patterns (sum 1); otherwise
    each pattern gets I = Poisson(((1 - w) I + w L) C) / C with w = noise_w and
    C = counts (default noise.counts). rows: simulate only the first `rows` scan rows
    (previews, benchmarks). Only one scan row of patterns is ever in memory, and the file
    appears atomically at the end (no partial file on failure).

    simulate.engine = "multislice" hands the rows to ccstae/physics/multislice.py (abTEM); its rows go
    to OUT.partial first, and a run interrupted there resumes from its last finished row. A
    noisy multislice scan is a noisy copy of a clean one cached beside the output
    (.ms-clean-<digest of [simulate], seed and rows>.h5), so the noise levels and doses of one
    sample cost one multislice run; noise draws are per scan row (seed, row).
    """
    from ccstae.core import cube_writer
    from ccstae.core.outputs import check_output
    from ccstae.physics import noise, strain

    sim = dict(cfg["simulate"])
    if seed is not None:
        sim["seed"] = seed
    p = sim_params(sim)
    counts = float(cfg["noise"]["counts"] if counts is None else counts)
    gamma = float(cfg["noise"]["lorentz_gamma"])
    if not clean:
        noise.check_level(noise_w)
        noise.check_counts(counts)
    out_path = Path(out_path)
    check_output(out_path, overwrite)

    gt = ground_truth_maps(p)
    rx, ry = p.scan
    if rows is not None:
        rx = max(1, min(rx, int(rows)))
        gt = {k: v[:rx] for k, v in gt.items()}
    jitter_rng = np.random.default_rng([p.seed, 1])
    noise_rng = np.random.default_rng([p.seed, 2])
    cfg_saved = dict(cfg, simulate=sim)
    attrs = _scan_attrs(cfg_saved, p, clean, noise_w, counts)

    from ccstae.physics.distort import Distortion, DistortionParams

    dp = DistortionParams.from_config(cfg)
    distortion = Distortion(dp, (rx, ry), p.pattern, p.seed, gt["grain"]) if dp.enabled else None
    if distortion is not None:  # the microscope's and detector's, with their truth (ccstae/physics/distort.py)
        attrs.update(distortion.attrs())

    if p.engine == "multislice":
        from ccstae.physics import multislice

        multislice.import_abtem()  # fail early, before any file appears
        # abTEM samples the pattern at 1 / extent (ccstae/physics/multislice.py: at least 2 samples per pixel)
        attrs.update({"specimen_extent_A": multislice.specimen_extent(p), "margin_A": multislice.margin_A(p),
                      "multislice_dk_over_k_px": max(1 / e for e in multislice.specimen_extent(p)) / p.k_px,
                      "multislice_render": multislice.RENDER_VERSION})
        if not clean or distortion is not None:  # on a clean scan cached beside the output: one run per sample
            return _noisy_copy(clean_multislice(cfg_saved, out_path, rows, progress), out_path, attrs, p,
                               None if clean else noise_w, counts, gamma, overwrite, progress, distortion)
        with cube_writer.CubeWriter(out_path, (rx, ry, p.pattern, p.pattern), attrs=attrs, overwrite=overwrite,
                                    resume=True) as w:
            multislice.simulate_rows(p, w, strain.swap_frame(gt), progress=progress)
        return out_path

    with cube_writer.CubeWriter(out_path, (rx, ry, p.pattern, p.pattern), attrs=attrs, overwrite=overwrite) as w:
        for r in tqdm(range(rx), desc="simulate", unit="row", disable=not progress, dynamic_ncols=True):
            row = render_patterns(p, gt["exx"][r], gt["eyy"][r], gt["exy"][r], gt["theta"][r], rng=jitter_rng)
            if distortion is not None:
                row = distortion.warp(row, np.full(ry, r), np.arange(ry))
            if not clean:
                row = noise.add_noise(row, noise_w, counts, noise_rng, gamma_frac=gamma)
            if distortion is not None:
                row = distortion.detect(row)
            w.write_rows(r, row.reshape(1, ry, p.pattern, p.pattern))
        w.write_ground_truth(strain.swap_frame(gt))  # the user frame (docs/frame.md)
        if distortion is not None:
            distortion.write_truth(w.file)
    return out_path


def _scan_attrs(cfg_saved: dict, p, clean: bool, noise_w: float, counts: float) -> dict:
    """A simulated scan's file attributes: its config, noise and dose, the simulator's parameters
    and geometry, and the frame its ground truth is in."""
    from ccstae.physics import noise, strain

    attrs = {"config": json.dumps(cfg_saved), "noise_w": 0.0 if clean else float(noise_w),
             "counts": counts, "clean": bool(clean), "seed": p.seed, "created_by": "ccstae simulate",
             "engine": p.engine, "scan_step_A": p.scan_step_A,
             "dose_e_per_A2": 0.0 if clean else noise.dose_from_counts(counts, p.scan_step_A),
             "geometry": "disk of g at (row, col) = (c + y, c + x), c = (P-1)/2, (x, y) = R(theta)(I+eps)^-T g",
             "theta_units": "radians", "strain_frame": strain.STRAIN_FRAME}
    attrs.update({f"simulate.{k}": v for k, v in asdict(p).items()})
    attrs.update({f"noise.{k}": v for k, v in cfg_saved["noise"].items()})
    attrs.update(p.geometry())
    return attrs


def simulate_training_sample(cfg: dict, path: Path, progress: bool = True) -> Path:
    """The clean simulated training cube of a config (the test scans use [simulate] as it is).

    sample_kind "scan": a scan of sample_scan positions over sample_grains grains;
    "random": as many patterns, each with its own rotation and strain drawn uniformly within
    the [simulate] ranges, so the training set covers the whole range of the test scans
    instead of the few grains and strain values one scan holds. Either way no label is used:
    the ground truth saved with the cube is for evaluation only.
    """
    from ccstae.core.cube_writer import write_cube
    from ccstae.physics.strain import STRAIN_FRAME, swap_frame

    t = cfg["train"]
    if t["sample_kind"] == "random":
        s = cfg["simulate"]
        rx, ry = t["sample_scan"]
        rng = np.random.default_rng(int(t["sample_seed"]))
        amp, rot = float(s["strain_amplitude"]), np.radians(float(s["grain_rotation_deg"]) + float(s["rotation_field_deg"]))
        gt = {k: rng.uniform(-amp, amp, (rx, ry)).astype(np.float32) for k in ("exx", "eyy", "exy")}
        gt["theta"] = rng.uniform(-rot, rot, (rx, ry)).astype(np.float32)
        gt["grain"] = np.arange(rx * ry, dtype=np.int32).reshape(rx, ry)
        patterns = render_patterns(s, *(gt[k].ravel() for k in ("exx", "eyy", "exy", "theta")), rng=rng)
        return write_cube(path, patterns.reshape(rx, ry, *patterns.shape[1:]), swap_frame(gt),
                          attrs={"config": json.dumps(cfg), "clean": True, "sample_kind": "random",
                                 "strain_frame": STRAIN_FRAME,
                                 "created_by": "ccstae train (simulated training sample)"})
    if t["sample_kind"] != "scan":
        raise UserError(f"config train.sample_kind '{t['sample_kind']}' is not 'scan' or 'random'")
    sample_cfg = dict(cfg, simulate=dict(cfg["simulate"], scan=list(t["sample_scan"]),
                                         n_grains=int(t["sample_grains"])))
    return simulate_scan(sample_cfg, path, clean=True, seed=int(t["sample_seed"]), progress=progress)
