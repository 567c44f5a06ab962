"""The py4DSTEM baseline (ccstae/analysis/baseline.py) on held-out test scans: MAE beside a flat map.

    .venv/bin/python bench/bench_baseline.py [kinematic] [multislice] [--counts C] [--seeds 1 2]

kinematic: the default preset's robustness test scans (seeds [robustness] seeds, levels
[noise] test_levels, 1e5 e/pattern): the figure to keep (mean exx/eyy MAE 0.0006 at w = 0).
multislice: the ms-mos2 preset (abTEM MoS2 monolayer polycrystal, ~99 % of the counts in the
central disk, 2 % strain amplitude), noise-free and at C e/pattern for each test level. Its
seeds (default 1 2) are not the training seed 0 that bench/tune_baseline.py tunes on.
Clean cubes are simulated once into data/bench_baseline/ (a multislice one takes minutes).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccstae.analysis import baseline  # noqa: E402
from ccstae.physics import noise, strain  # noqa: E402
from ccstae.core.config import load_config  # noqa: E402
from ccstae.core.data_io import open_cube  # noqa: E402
from ccstae.core.errors import UserError  # noqa: E402
from ccstae.analysis.evaluate import truth_maps  # noqa: E402
from ccstae.physics.scans import simulate_scan  # noqa: E402

DATA = Path("data/bench_baseline")


def clean_cube(preset: str, seed: int) -> Path:
    path = DATA / f"{preset}_clean_s{seed}.h5"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        simulate_scan(load_config(preset), path, clean=True, seed=seed, progress=True)
    return path


def score(data, truth) -> tuple[str, dict | None]:
    """One table cell: 'exx eyy exy (failed %)', or why there is no lattice."""
    try:
        maps, info = baseline.baseline_maps(data)
    except UserError as e:
        return "no lattice: " + str(e).split("no lattice visible: ")[-1][:40], None
    m = strain.mae(maps, truth)
    return f"{m['exx']:.4f} {m['eyy']:.4f} {m['exy']:.4f} ({100 * info['failed_fraction']:.0f} %)", m


def table(preset: str, seeds, levels, counts: float, with_clean: bool) -> None:
    cfg = load_config(preset)
    gamma = cfg["noise"]["lorentz_gamma"]
    print(f"\n{preset}: MAE exx eyy exy (positions not fitted), {counts:g} e/pattern")
    means = {}
    for seed in seeds:
        with open_cube(clean_cube(preset, seed)) as cube:
            clean, gt = cube.read_rows(0, cube.shape[0]), cube.ground_truth
        truth = truth_maps(gt)
        flat = strain.flat_map_mae(truth)
        print(f"  seed {seed}: flat map {flat['exx']:.4f} {flat['eyy']:.4f} {flat['exy']:.4f}")
        rng = np.random.default_rng([seed, 2])
        patterns = clean.reshape(-1, *clean.shape[2:])
        cases = ([("noise-free", clean)] if with_clean else []) + [
            (f"w={w:g}", noise.add_noise(patterns, w, counts, rng, gamma).reshape(clean.shape)) for w in levels]
        for label, data in cases:
            t0 = time.time()
            cell, m = score(data, truth)
            print(f"  seed {seed} {label:>10}: {cell}   {time.time() - t0:.0f} s", flush=True)
            if m is not None:
                means.setdefault(label, []).append((m["exx"] + m["eyy"]) / 2)
    print("  mean exx/eyy MAE: " + ", ".join(f"{k} {np.mean(v):.4f} ({len(v)} seeds)" for k, v in means.items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", nargs="*", default=["kinematic", "multislice"])
    ap.add_argument("--counts", type=float, default=1e5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="multislice test seeds")
    args = ap.parse_args(argv)
    ok, why = baseline.available()
    if not ok:
        sys.exit(why)
    if "kinematic" in args.which:
        cfg = load_config("default")
        table("default", cfg["robustness"]["seeds"], cfg["noise"]["test_levels"], cfg["noise"]["counts"], False)
    if "multislice" in args.which:
        table("ms-mos2", args.seeds, load_config("ms-mos2")["noise"]["test_levels"], args.counts, True)


if __name__ == "__main__":
    main()
