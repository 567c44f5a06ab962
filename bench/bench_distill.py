"""Self-distillation, measured: a distilled float run's cycle-phase encoder (encoder_cycle.h5),
its distilled encoder (encoder.h5) and the teacher the targets come from (Gauss-Newton
alignment of each test pattern to the learned reference, ccstae/model/refine.py), on test scans
of seeds no choice was made on, beside the flat map, the shot-noise floor and the slope.

It also times one training step of each objective side by side on the same batch: the cycle
loss (two warps and four blurs) against distillation (the encoder alone).

    .venv/bin/python bench/bench_distill.py [--run runs/default/float] [--seeds 1235 1236]

Needs a run trained with [train] distill_epochs > 0 (`make hls` on the default preset makes one).
Prints a table; asserts nothing.
"""
import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ccstae.analysis.evaluate import calibration, maps_from_raw, truth_maps  # noqa: E402
from ccstae.analysis.floor import cube_noise_floor  # noqa: E402
from ccstae.core.config import load_config  # noqa: E402
from ccstae.core.data_io import open_cube  # noqa: E402
from ccstae.model import network, refine  # noqa: E402
from ccstae.model.run import load_run  # noqa: E402
from ccstae.physics.strain import flat_map_mae, mae  # noqa: E402
from ccstae.pipeline import stages  # noqa: E402


def score(raw, truth, rot):
    pred = maps_from_raw(raw, rot_range=rot)
    m, c = mae(pred, truth, 2 * rot), calibration(pred, truth, 2 * rot)
    return (m["exx"] + m["eyy"]) / 2, (c["slope"]["exx"] + c["slope"]["eyy"]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/default/float"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1235, 1236])
    ap.add_argument("--data", type=Path, default=Path("data/bench-distill"))
    args = ap.parse_args()
    from tensorflow import keras

    run = load_run(args.run)
    if not (args.run / "encoder_cycle.h5").exists():
        raise SystemExit(f"{args.run}: no encoder_cycle.h5 (train with [train] distill_epochs > 0)")
    cycle = keras.models.load_model(args.run / "encoder_cycle.h5", compile=False)
    teacher = refine.Aligner(*run.reference_and_mask(), float(run.config["train"]["blur_end"]))
    rot = run.rot_range
    print(f"{args.run}: cycle {run.config['train']['epochs']} epochs + distill {run.config['train']['distill_epochs']}")
    print("mean of exx and eyy MAE (slope), test seeds " + ", ".join(map(str, args.seeds)))
    print(f"{'seed':>5} {'w':>5} {'cycle':>15} {'distilled':>15} {'teacher (GN)':>15} {'flat':>8} {'floor':>8}")
    for seed in args.seeds:
        cfg = load_config(run.config["name"]) if "name" in run.config else load_config("default")
        cfg["noise"]["test_seed"] = seed
        for w in cfg["noise"]["test_levels"]:
            path = stages.ensure_test_cube(cfg, args.data, float(w), seed, progress=False).path
            with open_cube(path) as cube:
                patterns = np.concatenate([b for _, b in cube.iter_batches(1024)])
                truth, shape = truth_maps(cube.ground_truth), cube.shape[:2]
            x = run.inputs(patterns)
            outs = {"cycle": cycle.predict(x, batch_size=256, verbose=0),
                    "distilled": run.encoder.predict(x, batch_size=256, verbose=0)}
            m, _ = teacher.fit(x, network.matrices_from_raw(outs["distilled"], rot), steps=4)
            outs["teacher"] = refine.raw_from_params(refine.params_from_matrices(m), rot)
            cells = []
            for k in ("cycle", "distilled", "teacher"):
                e, s = score(outs[k].reshape(*shape, 4), truth, rot)
                cells.append(f"{e:.5f} ({s:.2f})")
            flat = flat_map_mae(truth, 2 * rot)
            floor = cube_noise_floor(path)
            fl = f"{(floor['exx'] + floor['eyy']) / 2:8.5f}" if floor else f"{'-':>8}"
            print(f"{seed:>5} {w:>5} " + " ".join(f"{c:>15}" for c in cells)
                  + f" {(flat['exx'] + flat['eyy']) / 2:8.5f} {fl}", flush=True)

    # One step of each objective on the same batch (the trainer's own functions).
    import tensorflow as tf

    from ccstae.model.train import Trainer
    from ccstae.model.train_setup import load_patterns

    cfg = run.config
    src = load_patterns(Path(__import__("json").loads((args.run / "input.json").read_text())["cube"]),
                        cfg["train"], 0)[:2000]
    trainer = Trainer(cfg, src, Path(args.data) / "bench-run", encoder=run.encoder,
                      reference=reference, prep=run.prep)
    bs = int(cfg["train"]["batch_size"])
    xb, tb = trainer.prep(src[:bs]), trainer.prep(src[:bs])
    target = np.ones((bs, 4), np.float32) * np.array([1, 1, 0, 0], np.float32)
    scale = np.full(4, 0.01, np.float32)
    trainer.distill_optimizer = tf.keras.optimizers.Adam(1e-4)
    sigma = tf.constant(0.7)
    steps = {"cycle": lambda: trainer._step(xb, tb, sigma, trainer.mask),
             "distill": lambda: trainer._step_distill(xb, target, scale)}
    print(f"\none training step, batch {bs} (ms, median of 30 after warm-up):")
    for name, fn in steps.items():
        fn()
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        print(f"  {name:>8}: {1000 * np.median(times):.1f}")


if __name__ == "__main__":
    main()
