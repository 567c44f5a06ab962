"""Issue 11: preprocessing measured from the cube (central-disk mask, Bragg-region scale), the
lattice symmetry behind the rotation bound, and the training-health signal figure."""
import json

import numpy as np
import pytest

from ccstae import cli as ccstae_cli
from ccstae.analysis import floor as floor_mod
from ccstae.model import health, preprocess
from ccstae.physics import lattice
from ccstae.core.config import load_config
from ccstae.model.run import load_run
from ccstae.physics.simulate import render_patterns


def patterns_of(central_disk=2000.0, n=64, seed=0):
    sim = dict(load_config("default")["simulate"], central_disk=central_disk)
    rng = np.random.default_rng(seed)
    strain = rng.uniform(-0.02, 0.02, (3, n))
    return render_patterns(sim, *strain, rng.uniform(-0.2, 0.2, n), rng=rng), sim


def test_fit_preprocess_masks_the_central_disk_and_scales_by_the_bragg_disks():
    p, sim = patterns_of()
    pre = preprocess.fit_preprocess(p, binning=1)
    m = pre["measured"]
    # Measured without labels: the central disk (radius ~3 px) masked up to the gap before the
    # first-order disks (16.3 px out, radius ~3 px), which hold < 1 % of the counts.
    assert 3 < pre["mask"]["radius"] < 16.3 - 3
    assert abs(m["first_order_spacing"] - 16.3) < 1.5 and m["bragg_share"] < 0.02
    x = preprocess.preprocess(p, pre["scale"], 1, 0, pre["mask"])
    assert np.all(x[:, 28:36, 28:36] == 0)  # the central disk is gone
    assert 0.8 < x.max() < 1.2  # the Bragg disks fill the input range
    # The form before issue 11 (no mask): the central disk sets s, the Bragg disks get < 10 % of it.
    old = preprocess.preprocess(p, preprocess.fit_scale(p, 1), 1)
    assert old[:, 28:36, 28:36].max() > 0.9 and old[0][preprocess.mask_image(64, pre["mask"]) > 0].max() < 0.1


def spot_pattern(a1, a2, size=64, sigma=1.5):
    """Gaussian spots at the lattice points h a1 + k a2 (pixels, (x, y)) with a bright centre."""
    c = (size - 1) / 2
    rows, cols = np.mgrid[:size, :size]
    img = np.zeros((size, size))
    for h in range(-4, 5):
        for k in range(-4, 5):
            x, y = h * np.asarray(a1) + k * np.asarray(a2)
            amp = 100.0 if h == k == 0 else np.exp(-(x * x + y * y) / 800)
            img += amp * np.exp(-((cols - c - x) ** 2 + (rows - c - y) ** 2) / (2 * sigma ** 2))
    return (img / img.sum())[None]


@pytest.mark.parametrize("a1,a2,want", [((14, 0), (7, 7 * np.sqrt(3)), "hexagonal"),
                                        ((14, 0), (0, 14), "square"),
                                        ((12, 0), (0, 17), "rectangular")])
def test_lattice_symmetry_is_measured_from_a_pattern(a1, a2, want):
    p = spot_pattern(a1, a2)
    pre = preprocess.fit_preprocess(p, 1)
    x = preprocess.preprocess(p, pre["scale"], 1, 0, pre["mask"])[0, ..., 0]
    assert lattice.measure_symmetry(x)[0] == want


def test_map_signal_calls_constant_outputs_flat():
    rng = np.random.default_rng(0)
    flat = np.zeros((10, 10, 4)) + 0.3 + 1e-5 * rng.standard_normal((10, 10, 4))
    assert health.map_signal(flat, np.pi / 6)["flat"]
    live = 0.3 * rng.standard_normal((10, 10, 4))
    report = health.map_signal(live, np.pi / 6)
    assert not report["flat"] and report["signal"] > 1e-3


def test_noise_floor_falls_with_dose():
    p, _ = patterns_of(n=4)
    lo, hi = health.noise_floor(p, 1e4, central_radius=9), health.noise_floor(p, 1e6, central_radius=9)
    assert hi["exx"] < lo["exx"] / 5 and 0 < hi["exx"]
    assert lo["bragg_counts"] < 0.02 * 1e4


def test_a_collapsed_run_exits_non_zero_unless_allow_flat(tmp_path, capsys):
    # Every training pattern the same (no strain, no rotation): nothing to learn, so the maps are flat.
    cfg = tmp_path / "still.toml"
    cfg.write_text('name = "still"\n[simulate]\nscan = [8, 8]\npattern = 32\ncamera_length_mm = 170.0\n'
                   'convergence_mrad = 2.0\nstrain_amplitude = 0.0\ngrain_rotation_deg = 0.0\n'
                   'rotation_field_deg = 0.0\n[train]\nsample_scan = [8, 8]\nepochs = 1\nbatch_size = 16\n'
                   'noise_mode = "none"\n')
    rc = ccstae_cli.main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 3 and "FLAT" in out and "--allow-flat" in err
    assert json.loads((tmp_path / "run" / "health.json").read_text())["flat"]
    rc = ccstae_cli.main(["train", "--config", str(cfg), "--out", str(tmp_path / "run2"), "--allow-flat",
                          "--no-progress"])
    assert rc == 0
    run = load_run(tmp_path / "run2")
    assert run.prep["mask"]["kind"] == "disk" and run.prep["lattice"]["symmetry"] == "hexagonal"


def test_runs_saved_before_issue_11_load_without_mask(tmp_path):
    from tensorflow import keras

    from ccstae.model.network import ROTATION_RANGE, build_encoder

    build_encoder(32).save(tmp_path / "encoder.h5", save_format="h5")
    (tmp_path / "DONE").write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps(load_config("tiny")))
    (tmp_path / "preprocess.json").write_text(json.dumps({"pattern": 32, "binning": 1, "crop": 0, "scale": 0.5}))
    run = load_run(tmp_path)
    assert run.mask is None and run.rot_range == ROTATION_RANGE
    x = np.full((1, 32, 32), 0.5, np.float32)
    assert np.allclose(run.inputs(x), 1.0)
    assert isinstance(run.encoder, keras.Model)


def test_a_simulated_cubes_noise_floor_comes_from_its_noise_free_twin(tmp_path):
    from ccstae.physics import scans
    from ccstae.core.data_io import open_cube

    cfg = load_config("tiny")
    noisy = scans.simulate_scan(cfg, tmp_path / "noisy.h5", noise_w=0.5, counts=1e4, seed=7, progress=False)
    clean = scans.simulate_scan(cfg, tmp_path / "clean.h5", clean=True, seed=7, progress=False)
    twin = floor_mod.noise_free_twin(noisy, n=5)
    with open_cube(clean) as c:
        index = np.linspace(0, len(c) - 1, 5).astype(int)
        np.testing.assert_array_equal(twin, c.read_patterns(index))  # the very sample, without its noise
    f = floor_mod.cube_noise_floor(noisy, n=5)
    gamma = cfg["noise"]["lorentz_gamma"]
    assert f == {**health.noise_floor(twin, 1e4, 0.5, gamma, central_radius=f["central_radius"]),
                 "central_radius": f["central_radius"], "patterns": 5,
                 "centroid": floor_mod.centroid_floor(twin, 1e4, 0.5, gamma, central_radius=f["central_radius"])}
    # Bright disks a few pixels wide: edges add little, so the centroid figure lands near Cramer-Rao
    # (0.8-1.05x here; on pixels this coarse the gradient-based bound is a little pessimistic).
    assert f["centroid"]["disks"] >= 4 and all(0.5 < f["centroid"][k] / f[k] < 2 for k in ("exx", "eyy", "exy"))
    assert 0 < f["central_radius"] < cfg["simulate"]["pattern"] / 4 and f["bragg_counts"] < 0.5 * 1e4
    # More background, fewer electrons: a higher floor; and no floor for a cube with no twin.
    louder = scans.simulate_scan(cfg, tmp_path / "louder.h5", noise_w=0.5, counts=1e3, seed=7, progress=False)
    assert floor_mod.cube_noise_floor(louder, n=5)["exx"] > 2 * f["exx"]
    assert floor_mod.cube_noise_floor(clean) is None


def test_the_centroid_floor_falls_as_one_over_root_counts_and_rises_with_background():
    p, _ = patterns_of(central_disk=4.0, n=4)
    lo, hi = floor_mod.centroid_floor(p, 1e4, central_radius=6), floor_mod.centroid_floor(p, 1e6, central_radius=6)
    assert hi["exx"] == pytest.approx(lo["exx"] / 10, rel=1e-6)  # no background: exactly 1 / sqrt(counts)
    assert floor_mod.centroid_floor(p, 1e4, 0.5, central_radius=6)["exx"] > 1.5 * lo["exx"]


def test_the_bayes_bound_lies_below_both_the_flat_map_and_the_noise_floor():
    rng = np.random.default_rng(1)
    truth = {k: 0.01 * rng.standard_normal((20, 20)) for k in ("exx", "eyy", "exy")}
    flat = np.mean(np.abs(truth["exx"] - truth["exx"].mean()))
    k = np.sqrt(2 / np.pi)
    for sigma in (1e-4, 0.01, 1.0):  # per-pattern error std: tiny, like the strains, huge
        b = floor_mod.bayes_floor({key: k * sigma for key in truth}, truth)["exx"]
        assert b <= 1.02 * min(k * sigma, flat)
    assert b == pytest.approx(flat, rel=1e-3)  # no information: exactly a flat map's error
    assert floor_mod.bayes_floor({key: k * 1e-4 for key in truth}, truth)["exx"] == pytest.approx(k * 1e-4, rel=0.05)
    tau = np.std(truth["exx"])  # as precise as the strains are spread: a flat map's error over sqrt(2)
    assert floor_mod.bayes_floor({key: k * tau for key in truth}, truth)["exx"] == pytest.approx(flat / np.sqrt(2))
