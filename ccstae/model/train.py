"""Self-supervised training of the CC-ST-AE with noise injection.

No labels: the loss is the cycle loss of ccstae/model/network.py, early stopping and model
selection use the same loss on held-out probe positions. Ground truth, when a cube has
it, is never read here.

A run directory holds:
    config.json        the effective config
    preprocess.json    pattern size, binning, crop, the input scale s, the central-disk mask and
                       the measured lattice (symmetry, rotation bound) (ccstae/model/preprocess.py)
    encoder.h5         the best encoder (lowest validation loss), Keras 2 HDF5
    encoder_cycle.h5   distilled runs: the best encoder of the cycle phase, before distillation
    reference.npy      the learned reference pattern (encoder input space)
    history.json       losses per epoch (phase "cycle", then "distill" when [train] distill_epochs > 0)
    health.json        did the encoder learn anything (ccstae/model/health.py)
    errorbars.json     distilled runs: the encoder's efficiency against the per-pattern bound
                       (ccstae/model/errorbar.py), what its error bars are scaled by
    checkpoints/       the last state (weights, optimizer, epoch) for --resume
    DONE               written last: the run finished

Beside it: ccstae/model/train_config.py (what [train] may say, the noise and blur schedules),
ccstae/model/train_setup.py (what is measured from the cube before the first step) and
ccstae/model/distill.py (the self-distillation targets).
"""
from __future__ import annotations

import json
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from ccstae.model import distill, errorbar, health, measure, network, preprocess, stn, train_setup
from ccstae.model.train_config import DISTILL_OFF, blur_at, noise_levels_for, validate_train_config
from ccstae.physics import noise
from ccstae.core.outputs import atomic_path, write_json
from ccstae.core.errors import UserError


class Trainer:
    """Trains a CC-ST-AE. quant/ reuses it for quantization-aware training by handing in its
    own encoder, the float run's preprocessing parameters (`prep`, its preprocess.json) and
    reference, per-batch hooks (the pruning step) and a save function."""

    def __init__(self, cfg: dict, patterns: np.ndarray, run_dir: Path, encoder=None, scale=None,
                 reference=None, batch_hooks=(), save_encoder=None, select_from_epoch: int = 1,
                 prep: dict | None = None, integer_inputs: preprocess.PreprocessParams | None = None,
                 counts: float | None = None):
        for key, value in DISTILL_OFF.items():  # runs made before self-distillation existed
            cfg["train"].setdefault(key, value)
        validate_train_config(cfg)
        self.cfg, self.t, self.run_dir = cfg, cfg["train"], Path(run_dir)
        t, m = self.t, cfg["model"]
        tf.keras.utils.set_random_seed(t["seed"])
        tf.config.experimental.enable_op_determinism()
        self.binning, self.crop = int(m["input_binning"]), int(m["input_crop"])
        self.detector_pattern = patterns.shape[-1]
        if self.detector_pattern % self.binning:
            raise UserError(f"config model.input_binning {self.binning} does not divide the "
                            f"{self.detector_pattern}-pixel patterns")
        self.pattern = preprocess.input_size(self.detector_pattern, self.binning, self.crop)
        if self.crop < 0 or self.pattern < 16:
            raise UserError(f"config model.input_crop {self.crop}: the encoder input would be {self.pattern} pixels"
                            " (need >= 16)")
        self.counts, self.gamma = float(cfg["noise"]["counts"]), float(cfg["noise"]["lorentz_gamma"])
        # The cube's electrons per pattern when its patterns cannot tell (calibrated: resampled); else measured.
        self.measured_counts = counts
        if prep is None and scale is not None:  # a scale alone: the form before issue 11 (no mask)
            prep = {"pattern": self.detector_pattern, "binning": self.binning, "crop": self.crop,
                    "scale": float(scale), "lut": "sqrt", "mask": {"kind": "none"}}
        if prep is None:
            prep = train_setup.fit_preprocess(cfg, patterns, self.binning, self.crop, counts)
            self.counts = float(cfg["noise"]["counts"])  # noise_mode "auto" may inject at the cube's own dose
        self.prep_params = dict(prep)
        self.scale, self.prep_mask = float(prep["scale"]), prep.get("mask")
        self.batch_hooks = list(batch_hooks)
        self.targets = None  # the distillation targets, once the distill phase has begun
        # Model selection considers epochs from this one on (QAT: once pruning reached its target).
        self.select_from_epoch = int(select_from_epoch)
        self.save_encoder = save_encoder or (lambda enc, path: enc.save(path, save_format="h5", include_optimizer=False))
        # QAT: the encoder's inputs come from the integer front end's reference (counts -> binned
        # counts -> mask -> LUT), so training sees bit for bit what the firmware will; targets stay float.
        self.integer_inputs = integer_inputs

        rng = np.random.default_rng(t["seed"])
        order = rng.permutation(len(patterns))
        n_val = max(1, int(round(t["val_fraction"] * len(patterns))))
        self.train_raw, self.val_raw = patterns[order[n_val:]], patterns[order[:n_val]]
        # The validation set gets fixed noise draws at the training levels, once.
        val_levels = np.resize(np.asarray(t["noise_levels"] if t["noise_mode"] != "none" else [0.0]), n_val)
        self.val_in = self.encoder_inputs(self.noisy(self.val_raw, val_levels, np.random.default_rng(t["seed"] + 1)))
        self.val_target = self.prep(self.val_raw)

        if encoder is None:
            encoder = network.build_encoder(self.pattern, m["filters"], m["dense"])
        if reference is None:
            # Init: the mean of a few training patterns that look alike (the nearest
            # neighbours of one pattern), i.e. one grain's pattern with noise averaged out.
            x = self.prep(self.train_raw[: min(len(self.train_raw), 4000)])
            d = np.mean((x - x[:1]) ** 2, axis=(1, 2, 3))
            reference = x[np.argsort(d)[:16]].mean(axis=0)
        if "lattice" not in self.prep_params:
            self.prep_params["lattice"] = train_setup.fit_lattice(reference[..., 0], m["lattice_symmetry"],
                                                                  self.prep_params)
        self.rot_range = float(self.prep_params["lattice"]["rotation_range"])
        self.model = network.CCSTAE(encoder, reference, self.rot_range)
        self.mask = stn.loss_mask(self.pattern, t, self.prep_mask)
        self.optimizer = tf.keras.optimizers.Adam(t["learning_rate"])
        self.optimizer.build(self.model.trainable())  # one optimizer for the encoder-only and the full steps
        self.epoch = tf.Variable(0, dtype=tf.int64)
        self.best_val = tf.Variable(np.inf, dtype=tf.float64)
        self.ckpt = tf.train.Checkpoint(encoder=encoder, reference=self.model.reference_logit,
                                        optimizer=self.optimizer, epoch=self.epoch, best_val=self.best_val)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.run_dir / "checkpoints"), max_to_keep=2)

    def summary(self, patterns) -> str:
        """train_setup.summary of this run: what was measured and the noise it will inject, and why."""
        return train_setup.summary(self.prep_params, self.t, self.counts, patterns, self.measured_counts)

    def noisy(self, raw, levels, rng):
        if levels is None:
            return raw
        return noise.add_noise(raw, levels, self.counts, rng, gamma_frac=self.gamma)

    def prep(self, raw):
        return preprocess.preprocess(raw, self.scale, self.binning, self.crop, self.prep_mask)

    def encoder_inputs(self, raw):
        if self.integer_inputs is None:
            return self.prep(raw)
        return preprocess.preprocess_integer(raw, self.integer_inputs)

    # autograph=False: the steps use plain Python control flow only, and AutoGraph's conversion cost
    # ~7 s of a tiny run's 40 (tests, make hls). Tensor-valued `if`/`for` here would need it back.
    @tf.function(autograph=False)
    def _step(self, x_in, x_target, sigma, mask):
        with tf.GradientTape() as tape:
            losses = self.model.losses(x_in, x_target, sigma, mask, training=True)
        variables = self.model.trainable()
        grads = tape.gradient(losses["total"], variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return losses

    @tf.function(autograph=False)
    def _step_encoder(self, x_in, x_target, sigma, mask):
        """A step with the reference held: it stays the sharp pattern it was initialised to."""
        with tf.GradientTape() as tape:
            losses = self.model.losses(x_in, x_target, sigma, mask, training=True)
        variables = self.model.encoder.trainable_variables
        grads = tape.gradient(losses["total"], variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return losses

    @tf.function(autograph=False)
    def _step_distill(self, x_in, target, scale):
        """A self-distillation step: the encoder alone, the reference stays as the cycle phase left it."""
        with tf.GradientTape() as tape:
            losses = self.model.distill_losses(x_in, target, scale, training=True)
        variables = self.model.encoder.trainable_variables
        grads = tape.gradient(losses["total"], variables)
        self.distill_optimizer.apply_gradients(zip(grads, variables))
        return losses

    @tf.function(reduce_retracing=True, autograph=False)  # validation chunks of 256 and a remainder
    def _eval_distill(self, x_in, target, scale):
        return self.model.distill_losses(x_in, target, scale)

    def predict_raw(self, raw_patterns, batch_size: int = 256) -> np.ndarray:
        """The encoder's raw outputs on patterns, (N, 4)."""
        return np.concatenate([self.model.encoder(self.encoder_inputs(raw_patterns[i:i + batch_size]),
                                                  training=False).numpy()
                               for i in range(0, len(raw_patterns), batch_size)])

    def distill_targets(self) -> dict:
        """The distillation targets of the training and validation patterns, and their loss units
        (ccstae/model/distill.py), refined against the learned reference from the encoder's own guess."""
        return distill.fit_targets(self.model.reference.numpy(), self.mask, self.t,
                                   {"train": self.train_raw, "val": self.val_raw}, self.predict_raw, self.prep,
                                   self.rot_range)

    def begin_distill(self, n_batches: int) -> None:
        """Start the distillation phase: the best cycle-phase encoder and reference come back, the
        targets are fitted, and model selection starts afresh (another loss, not comparable)."""
        if getattr(self, "_best", None) is not None:
            self.model.encoder.set_weights(self._best[0])
            self.model.reference_logit.assign(self._best[1])
        if (self.run_dir / "encoder.h5").exists() and not (self.run_dir / "encoder_cycle.h5").exists():
            # The cycle phase's encoder, kept for the ablation (bench/bench_distill.py).
            with atomic_path(self.run_dir / "encoder_cycle.h5", overwrite=True) as tmp:
                shutil.copyfile(self.run_dir / "encoder.h5", tmp)
        self.targets = self.distill_targets()
        t = self.t
        decay = tf.keras.optimizers.schedules.CosineDecay(float(t["distill_learning_rate"]),
                                                          max(1, int(t["distill_epochs"]) * n_batches))
        # Not checkpointed: a run resumed inside the phase restarts this optimizer and its schedule.
        self.distill_optimizer = tf.keras.optimizers.Adam(decay)
        if int(self.epoch.numpy()) == int(t["epochs"]):  # not a resume inside the phase
            self.best_val.assign(np.inf)

    def distill_validation_loss(self) -> float:
        tg, totals = self.targets, []
        for i in range(0, len(self.val_in), 256):
            losses = self._eval_distill(self.val_in[i:i + 256], tg["val"][i:i + 256], tg["scale"])
            totals.append(float(losses["distill"]) * len(self.val_in[i:i + 256]))
        return sum(totals) / len(self.val_in)

    @tf.function(reduce_retracing=True, autograph=False)
    def _eval(self, x_in, x_target, sigma, mask):
        return self.model.losses(x_in, x_target, sigma, mask)

    def validation_loss(self) -> float:
        sigma = tf.constant(self.t["blur_end"], tf.float32)
        totals = []
        for i in range(0, len(self.val_in), 256):
            losses = self._eval(self.val_in[i:i + 256], self.val_target[i:i + 256], sigma, self.mask)
            totals.append(float(losses["cycle_ref"] + losses["cycle_pattern"]) * len(self.val_in[i:i + 256]))
        return sum(totals) / len(self.val_in)

    def batches(self, order, epoch: int, rng, n_batches: int, targets: bool):
        """(indices, encoder inputs, cycle targets or None) of each batch of an epoch, in `order`.

        The next batch is drawn in a background thread while this one trains: noise injection's
        Poisson draws (numpy releases the GIL in them) took 13 ms of a 35 ms distillation step on
        2 cores. One worker draws the batches in turn from `rng`: the same noise, draw for draw."""
        bs = int(self.t["batch_size"])

        def draw(b):
            idx = order[b * bs:(b + 1) * bs]
            raw = self.train_raw[idx]
            x_in = self.encoder_inputs(self.noisy(raw, noise_levels_for(self.t, epoch, len(raw), rng), rng))
            return idx, x_in, self.prep(raw) if targets else None

        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(draw, 0)
            for b in range(n_batches):
                batch = ahead.result()
                if b + 1 < n_batches:
                    ahead = pool.submit(draw, b + 1)
                yield batch

    @property
    def batches_per_epoch(self) -> int:
        """Full batches only (each epoch's permutation leaves out a different remainder): one batch
        shape, so each step function is traced once. A second trace costs ~6 s of a tiny run's 40."""
        return max(1, len(self.train_raw) // int(self.t["batch_size"]))

    def fit(self, resume: bool = False, progress: bool = True) -> dict:
        t, run = self.t, self.run_dir
        history_path = run / "history.json"
        history = []
        if resume:
            if self.manager.latest_checkpoint is None:
                raise UserError(f"{run}: nothing to resume (no checkpoint in {run / 'checkpoints'})")
            self.ckpt.restore(self.manager.latest_checkpoint)
            history = json.loads(history_path.read_text()) if history_path.exists() else []
            history = history[: int(self.epoch.numpy())]
        self.write_static()
        stale = 0
        n_batches = self.batches_per_epoch
        n_cycle, total = int(t["epochs"]), int(t["epochs"]) + int(t["distill_epochs"])
        epoch = int(self.epoch.numpy())
        bar = tqdm(total=total * n_batches, initial=epoch * n_batches, disable=not progress,
                   desc="train", unit="batch", dynamic_ncols=True)
        while epoch < total:
            distill = epoch >= n_cycle
            if distill and self.targets is None:
                bar.set_description("targets")
                self.begin_distill(n_batches)
                bar.set_description("distill")
                stale = 0
            rng = np.random.default_rng([t["seed"], epoch])  # per epoch: resume draws the same noise
            sigma = tf.constant(blur_at(t, min(epoch, n_cycle)), tf.float32)
            order = rng.permutation(len(self.train_raw))
            t0, sums = time.time(), {}
            for b, (idx, x_in, x_target) in enumerate(self.batches(order, epoch, rng, n_batches, not distill)):
                for hook in self.batch_hooks:
                    hook(epoch * n_batches + b)
                if distill:
                    losses = self._step_distill(x_in, self.targets["train"][idx], self.targets["scale"])
                else:
                    step = self._step_encoder if epoch < t["reference_freeze"] * n_cycle else self._step
                    losses = step(x_in, x_target, sigma, self.mask)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v) / n_batches
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{float(losses['total']):.4g}")
            val = self.distill_validation_loss() if distill else self.validation_loss()
            improved = epoch + 1 >= self.select_from_epoch and val < float(self.best_val.numpy())
            if improved:
                self.best_val.assign(val)
                self.save_best()
            history.append({"epoch": epoch + 1, "phase": "distill" if distill else "cycle",
                            "blur": float(sigma), "val_loss": val, "seconds": time.time() - t0, **sums})
            # The history first, then the checkpoint: a run killed between the two resumes from
            # the previous checkpoint and redoes this epoch, where the other order lost its entry.
            write_json(history_path, history)
            epoch += 1
            eligible = epoch >= self.select_from_epoch
            stale = 0 if improved or not eligible else stale + 1  # only selectable epochs wear out patience
            # Patience counts only once the blur schedule has settled: earlier losses are
            # measured at another blur and are not comparable. A cycle phase that stops early
            # hands over to the distillation phase.
            if (distill or epoch > 0.6 * n_cycle) and stale >= t["patience"]:
                if distill or total == n_cycle:
                    self.epoch.assign(epoch)
                    self.manager.save()
                    break
                bar.update((n_cycle - epoch) * n_batches)
                epoch = n_cycle
            self.epoch.assign(epoch)
            self.manager.save()
        bar.close()
        if not (run / "encoder.h5").exists():  # no epoch was eligible for selection: keep the last
            self.save_best()
        report = self.health()
        write_json(run / "health.json", report)
        if self.targets is not None:  # the distillation targets are what error bars are calibrated on
            write_json(run / "errorbars.json", self.with_best(self.calibrate_error_bars))
        write_json(run / "DONE", {"epochs": int(self.epoch.numpy()), "best_val_loss": float(self.best_val.numpy())})
        return {"history": history, "best_val_loss": float(self.best_val.numpy()), "health": report}

    def with_best(self, fn):
        """fn() with the best encoder and reference in place (the model keeps training's last state)."""
        last = self.model.encoder.get_weights(), self.model.reference_logit.numpy()
        if getattr(self, "_best", None) is not None:
            self.model.encoder.set_weights(self._best[0])
            self.model.reference_logit.assign(self._best[1])
        try:
            return fn()
        finally:
            self.model.encoder.set_weights(last[0])
            self.model.reference_logit.assign(last[1])

    def health(self) -> dict:
        """Did the best encoder learn anything? (ccstae/model/health.py) On the validation patterns."""
        level = max(self.t["noise_levels"]) if self.t["noise_mode"] != "none" else 0.0
        return self.with_best(lambda: health.training_health(
            self.model, self.val_raw, self.prep, self.noisy, self.mask, float(self.t["blur_end"]), level,
            seed=int(self.t["seed"])))

    def calibrate_error_bars(self) -> dict:
        """The encoder's efficiency against the per-pattern bound (ccstae/model/errorbar.py), on the
        validation patterns at each training noise level, against the distillation targets."""
        levels = sorted(set(self.t["noise_levels"])) if self.t["noise_mode"] != "none" else [0.0]
        return errorbar.calibrate(self.model, self.val_raw, self.targets["val"], self.prep, self.encoder_inputs,
                                  self.noisy, self.mask, levels, self.scale, int(self.t["seed"]))

    def write_static(self):
        run = self.run_dir
        run.mkdir(parents=True, exist_ok=True)
        write_json(run / "config.json", self.cfg)
        pre = dict(self.prep_params)
        if self.integer_inputs is not None:
            pre.update(self.integer_inputs.to_json(), input_path="counts")
        write_json(run / "preprocess.json", pre)

    def save_best(self):
        run = self.run_dir
        # Keras 2.14 warns on every HDF5 save (legacy format, metrics not built): nothing a user can
        # act on, and it broke the progress bar once per improving epoch.
        logger, level = tf.get_logger(), tf.get_logger().level
        with atomic_path(run / "encoder.h5", overwrite=True) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logger.setLevel("ERROR")
            try:
                self.save_encoder(self.model.encoder, tmp)
            finally:
                logger.setLevel(level)
        self._best = self.model.encoder.get_weights(), self.model.reference_logit.numpy()
        with atomic_path(run / "reference.npy", overwrite=True) as tmp, open(tmp, "wb") as f:
            np.save(f, self.model.reference.numpy())


def train(cfg: dict, cube_path: Path, run_dir: Path, resume: bool = False, progress: bool = True,
          dataset: str | None = None, report=None, calibration=None, scan=None) -> dict:
    """report: called with the one-line measurement summary before training (the CLI prints it).
    calibration, scan: as in train_setup.load_patterns; input.json records them, and QAT reads the cube the same way."""
    run_dir = Path(run_dir)
    if (run_dir / "DONE").exists() and not resume:
        raise UserError(f"{run_dir}: a finished run is already there (choose another --out)")
    patterns = train_setup.load_patterns(Path(cube_path), cfg["train"], cfg["train"]["seed"], dataset, calibration,
                                         scan)
    # Resampled (calibrated) patterns have lost the count grid: the dose from the file's own.
    counts = train_setup.file_counts(cube_path, dataset, scan) if calibration is not None else None
    try:
        trainer = Trainer(cfg, patterns, run_dir, counts=counts)
    except measure.MeasurementError as e:
        raise measure.MeasurementError(f"{cube_path}: {e}") from None
    if report is not None and "measured" in trainer.prep_params:
        report(trainer.summary(patterns))
    trainer.write_static()
    write_json(run_dir / "input.json", {"cube": str(Path(cube_path).resolve()), "dataset": dataset,
                                        "calibration": str(Path(calibration).resolve()) if calibration else None,
                                        "scan": list(scan) if scan else None})
    return trainer.fit(resume=resume, progress=progress)
