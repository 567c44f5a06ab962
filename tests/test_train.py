"""Self-supervised training on the tiny preset: the loss falls, resume continues, runs load."""
import json

import numpy as np
import pytest

from ccstae.model import train, train_config, train_setup
from ccstae.core.config import load_config
from ccstae.core.errors import UserError
from ccstae.physics.scans import simulate_scan


@pytest.fixture(scope="module")
def tiny_cube(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny_clean.h5"
    simulate_scan(load_config("tiny"), path, clean=True, progress=False)
    return path


def tiny_config(epochs=4, distill_epochs=0, **train_overrides):
    cfg = load_config("tiny")
    cfg["train"].update(epochs=epochs, distill_epochs=distill_epochs, batch_size=16, **train_overrides)
    return cfg


def test_distillation_follows_the_cycle_phase_and_calibrates_error_bars(tiny_cube, tmp_path):
    """Cycle epochs, then distillation epochs towards targets refined against the learned reference:
    the phases are recorded, the cycle encoder is kept, the distilled encoder moves towards the
    targets (its validation loss falls), and the error bars get a finite efficiency."""
    run = tmp_path / "run"
    result = train.train(tiny_config(epochs=3, distill_epochs=4, blur_start=1.0, blur_end=1.0), tiny_cube, run,
                         progress=False)
    phases = [h["phase"] for h in result["history"]]
    assert phases == ["cycle"] * 3 + ["distill"] * 4
    distill = [h["val_loss"] for h in result["history"] if h["phase"] == "distill"]
    assert min(distill[1:]) < distill[0], distill
    assert (run / "encoder_cycle.h5").exists() and (run / "encoder.h5").exists()
    eb = json.loads((run / "errorbars.json").read_text())
    # the tiny cube is noise-free, so the calibration draws its own noise at the training levels
    assert eb["efficiency"] and all(np.isfinite(eb["efficiency"][k]) and eb["floor"][k] + eb["efficiency"][k] > 0
                                    for k in eb["efficiency"]), eb


def test_a_run_resumed_inside_the_distillation_phase_finishes_it(tiny_cube, tmp_path):
    cfg = tiny_config(epochs=2, distill_epochs=3)
    patterns = train_setup.load_patterns(tiny_cube, cfg["train"], 0)
    run = tmp_path / "run"

    def kill_in_epoch_4(step):
        if step == 3 * trainer.batches_per_epoch:
            raise KeyboardInterrupt

    trainer = train.Trainer(cfg, patterns, run, batch_hooks=[kill_in_epoch_4])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(progress=False)
    resumed = train.train(tiny_config(epochs=2, distill_epochs=3), tiny_cube, run, resume=True, progress=False)
    assert [h["phase"] for h in resumed["history"]] == ["cycle"] * 2 + ["distill"] * 3
    assert (run / "DONE").exists()


def test_the_encoder_learns_and_the_run_is_complete(tiny_cube, tmp_path):
    result = train.train(tiny_config(epochs=6, blur_start=1.0, blur_end=1.0), tiny_cube, tmp_path / "run",
                         progress=False)
    # The encoder starts at the identity warp (zero output layer): its loss must end well below
    # the identity warp's with the learned reference, on held-out patterns (ccstae/model/health.py).
    health = result["health"]
    assert health["loss"] < 0.7 * health["identity_loss"], health
    assert not health["flat"], health["verdict"]
    assert json.loads((tmp_path / "run" / "health.json").read_text())["loss_gain"] == health["loss_gain"]
    for name in ("encoder.h5", "reference.npy", "config.json", "preprocess.json", "history.json", "DONE"):
        assert (tmp_path / "run" / name).exists(), name
    from ccstae.model.run import load_run

    run = load_run(tmp_path / "run")
    assert run.pattern == 32 and run.scale > 0


def test_resume_continues_from_the_saved_epoch(tiny_cube, tmp_path):
    run = tmp_path / "run"
    patterns = train_setup.load_patterns(tiny_cube, tiny_config()["train"], 0)

    class Killed(Exception):
        pass

    def kill_in_epoch_3(step):
        if step >= 2 * trainer.batches_per_epoch + 1:
            raise Killed

    trainer = train.Trainer(tiny_config(epochs=4), patterns, run, batch_hooks=[kill_in_epoch_3])
    with pytest.raises(Killed):
        trainer.fit(progress=False)
    assert not (run / "DONE").exists()
    first = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in first] == [1, 2]
    resumed = train.train(tiny_config(epochs=4), tiny_cube, run, resume=True, progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    # Epochs 1-2 were not recomputed, and 3-4 are what an uninterrupted run computes.
    assert resumed["history"][:2] == first
    straight = train.train(tiny_config(epochs=4), tiny_cube, tmp_path / "straight", progress=False)
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in straight["history"]]
    assert json.loads((run / "DONE").read_text())["epochs"] == 4


def test_same_seed_same_result(tiny_cube, tmp_path):
    a = train.train(tiny_config(epochs=1), tiny_cube, tmp_path / "a", progress=False)
    b = train.train(tiny_config(epochs=1), tiny_cube, tmp_path / "b", progress=False)
    assert a["best_val_loss"] == b["best_val_loss"]


def test_noise_modes_draw_the_levels_they_promise():
    rng = np.random.default_rng(0)
    t = tiny_config()["train"]
    t.update(noise_levels=[0.0, 0.5, 0.7], epochs=10)
    assert noise_set(t, "fixed", 0, rng) == {0.0}
    assert noise_set(t, "mixed", 0, rng) == {0.0, 0.5, 0.7}
    assert noise_set(t, "curriculum", 0, rng) == {0.0}  # clean first
    assert noise_set(t, "curriculum", 9, rng) == {0.0, 0.5, 0.7}
    assert train_config.noise_levels_for(dict(t, noise_mode="none"), 0, 8, rng) is None


def noise_set(t, mode, epoch, rng):
    return set(np.round(train_config.noise_levels_for(dict(t, noise_mode=mode), epoch, 500, rng), 3).tolist())


def test_bad_configs_are_user_errors(tiny_cube, tmp_path):
    with pytest.raises(UserError, match="noise_mode"):
        train.train(tiny_config(noise_mode="loud"), tiny_cube, tmp_path / "x", progress=False)
    with pytest.raises(UserError, match="noise_levels"):
        train.train(tiny_config(noise_levels=[1.5]), tiny_cube, tmp_path / "x", progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        train.train(tiny_config(), tiny_cube, tmp_path / "never", resume=True, progress=False)


def test_early_stopping_waits_for_epochs_eligible_for_selection(tiny_cube, tmp_path):
    """QAT selects only epochs at the target sparsity; patience must not end training before them."""
    cfg = tiny_config(epochs=4, patience=1)
    patterns = train_setup.load_patterns(tiny_cube, cfg["train"], 0)
    result = train.Trainer(cfg, patterns, tmp_path / "run", select_from_epoch=4).fit(progress=False)
    assert len(result["history"]) == 4
    assert np.isfinite(result["best_val_loss"])


def test_a_result_stays_valid_when_a_config_key_is_added_at_its_default(tmp_path):
    import copy
    import json

    from ccstae.core.config import load_config, stale

    cfg = load_config("tiny")
    old = copy.deepcopy(cfg)
    del old["model"]["input_crop"]  # a run saved before [model] input_crop existed
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(old))
    sections = ("simulate", "noise", "model", "train")
    assert not stale(saved, cfg, sections)
    cfg["model"]["input_crop"] = 1  # but not for a config that sets it to something else
    assert stale(saved, cfg, sections)
    cfg["model"]["input_crop"] = 0
    cfg["train"]["epochs"] += 1
    assert stale(saved, cfg, sections)
    assert stale(tmp_path / "missing.json", cfg, sections)


def test_every_shipped_config_loads_and_validates():
    from ccstae.studies import sweep
    from ccstae.core.config import load_config, preset_names

    for name in preset_names():
        cfg = load_config(name)  # unknown keys or bad TOML would raise here
        assert cfg["name"], name
        if "sweep" in cfg and cfg["sweep"]:
            assert [sweep.variant_config(cfg, v) for v in sweep.grid(cfg)], name
