"""A training variant against the default, float and quantized, on test seeds no choice was made on.

    .venv/bin/python bench/bench_train_variants.py NAME [--set train.distill_epochs=40 ...]
                                                   [--qat] [--quant epochs=20 ...] [--seeds 1235 1236]

Trains the default preset's float CC-ST-AE on its simulated training sample with each --set
override (section.key=JSON value), then with --qat quantizes it ([quant] overrides from --quant),
and prints the mean exx/eyy MAE and the slope per test level on the default's test scans of
--seeds (simulated once into data/bench-distill/, as bench/bench_distill.py does). Runs go to
runs/bench-variants/NAME. The table of levers in docs/results.md comes from it:

    bench_train_variants.py base --qat
    bench_train_variants.py seed1 --set train.seed=1
    bench_train_variants.py d40 --set train.distill_epochs=40 --qat
    bench_train_variants.py d40 --qat --quant epochs=20        (reuses the float run of d40)
    bench_train_variants.py s96 --set 'train.sample_scan=[96,96]'
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccstae.analysis.evaluate import calibration, maps_from_raw, truth_maps  # noqa: E402
from ccstae.core.config import load_config  # noqa: E402
from ccstae.core.data_io import open_cube  # noqa: E402
from ccstae.model import train  # noqa: E402
from ccstae.model.run import load_run  # noqa: E402
from ccstae.physics.strain import mae  # noqa: E402
from ccstae.pipeline import stages  # noqa: E402


def overrides(pairs, cfg: dict, section: str | None = None) -> dict:
    for pair in pairs:
        key, value = pair.split("=", 1)
        sec, name = (section, key) if section else key.split(".", 1)
        if name not in cfg[sec]:
            sys.exit(f"bench_train_variants: unknown key {sec}.{name}")
        cfg[sec][name] = json.loads(value)
    return cfg


def score(run, cubes: list) -> dict:
    """{w: (mean exx/eyy MAE, mean slope)} averaged over the seeds; cubes: (w, path) pairs."""
    out = {}
    for w, path in cubes:
        with open_cube(path) as cube:
            patterns = np.concatenate([b for _, b in cube.iter_batches(1024)])
            truth, shape = truth_maps(cube.ground_truth), cube.shape[:2]
        raw = run.encoder.predict(run.inputs(patterns), batch_size=512, verbose=0).reshape(*shape, 4)
        pred = maps_from_raw(raw, rot_range=run.rot_range)
        m, cal = mae(pred, truth, 2 * run.rot_range), calibration(pred, truth)
        out.setdefault(w, []).append(((m["exx"] + m["eyy"]) / 2, (cal["slope"]["exx"] + cal["slope"]["eyy"]) / 2))
    return {w: tuple(np.mean(v, axis=0)) for w, v in sorted(out.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?", default="default", help="the variant's name (runs/bench-variants/NAME)")
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--qat", action="store_true", help="also quantize (QAT + pruning) and score that")
    ap.add_argument("--quant", nargs="*", default=[], metavar="KEY=VALUE", help="[quant] overrides for --qat")
    ap.add_argument("--seeds", nargs="*", type=int, default=[1235, 1236])
    ap.add_argument("--data", type=Path, default=Path("data/bench-distill"))
    args = ap.parse_args()
    cfg = overrides(args.set, load_config("default"))
    root = Path("runs/bench-variants") / args.name
    cubes = [(float(w), stages.ensure_test_cube(cfg, args.data, float(w), seed, progress=False).path)
             for w in cfg["noise"]["test_levels"] for seed in args.seeds]
    if not (root / "float" / "DONE").exists():
        shutil.rmtree(root / "float", ignore_errors=True)
        train_cube = stages.ensure_train_cube(cfg, Path("data") / cfg["name"], False).path
        t0 = time.time()
        train.train(cfg, train_cube, root / "float", progress=False)
        print(f"{args.name}: float trained in {time.time() - t0:.0f} s")
    rows = [("float", score(load_run(root / "float"), cubes))]
    if args.qat:
        from ccstae.quant import qat, qmodel

        quant = overrides(args.quant, {"quant": dict(cfg["quant"])}, "quant")["quant"]
        tag = "q" + "".join(f"-{p}" for p in args.quant)
        shutil.rmtree(root / tag, ignore_errors=True)
        t0 = time.time()
        qat.quantize(root / "float", root / tag, progress=False, quant_section=quant)
        print(f"{args.name}: QAT in {time.time() - t0:.0f} s")
        rows.append((f"quantized {' '.join(args.quant)}".strip(),
                     score(load_run(root / tag, load_encoder=qmodel.load_qencoder), cubes)))
    print(f"{args.name} ({' '.join(args.set) or 'default'}), mean exx/eyy MAE (slope) over seeds "
          f"{', '.join(map(str, args.seeds))}:")
    for model, res in rows:
        print(f"  {model:28s} " + "  ".join(f"w={w:g} {m:.5f} ({s:.2f})" for w, (m, s) in res.items()))


if __name__ == "__main__":
    main()
