"""Issue 25: the mean-pattern measurement with a strong background modelled and removed, its
sanity checks and their one-line refusal, the lattice symmetry under a background, and the
summary line `ccstae train` prints before training."""
import re

import numpy as np
import pytest

from ccstae.core.config import load_config
from ccstae.core.errors import UserError
from ccstae.core.data_io import open_cube
from ccstae.model import measure, preprocess
from ccstae.physics import noise
from ccstae.physics.simulate import sim_params
from ccstae.physics.scans import simulate_scan


def single_crystal(tmp_path_factory, lattice="hexagonal", central_share=0.0):
    """A clean 10x10 scan of one grain, the default preset's detector geometry (64 px)."""
    cfg = load_config("default")
    cfg["simulate"].update(scan=[10, 10], n_grains=1, grain_rotation_deg=0.0, lattice=lattice,
                           central_share=central_share)
    path = tmp_path_factory.mktemp("cube") / f"{lattice}-{central_share}.h5"
    simulate_scan(cfg, path, clean=True, progress=False)
    with open_cube(path) as cube:
        x = np.concatenate([b for _, b in cube.iter_batches(1024)])
    return x.reshape(-1, *x.shape[-2:]), sim_params(cfg)


@pytest.fixture(scope="module", params=["hexagonal", "square"])
def crystal(request, tmp_path_factory):
    return request.param, *single_crystal(tmp_path_factory, request.param)


@pytest.mark.parametrize("w", [0.5, 0.7])
def test_figures_within_5_percent_under_a_strong_background(crystal, w):
    lattice, clean, p = crystal
    x = noise.add_noise(clean, w, 1e5, np.random.default_rng(0))
    pre = preprocess.fit_preprocess(x, 1)
    m = pre["measured"]
    assert abs(m["spacing"] / p.g1_px - 1) < 0.05
    assert abs(m["disk_radius"] / p.disk_radius_px - 1) < 0.05
    assert abs(m["background"]["fraction"] - w) < 0.1
    assert m["central_mask_radius"] < m["first_order_spacing"] - m["disk_radius"]
    inputs = preprocess.preprocess(x, pre["scale"], 1, 0, pre["mask"])
    d = np.mean((inputs - inputs[:1]) ** 2, axis=(1, 2, 3))
    reference = inputs[np.argsort(d)[:16]].mean(axis=0)[..., 0]
    assert measure.lattice_symmetry(reference, pre["mask"]["radius"], m["disk_radius"])[0] == lattice


def test_a_monolayer_under_w_07_at_a_high_dose(tmp_path_factory):
    clean, p = single_crystal(tmp_path_factory, "hexagonal", central_share=0.99)
    x = noise.add_noise(clean, 0.7, 1e7, np.random.default_rng(0))
    m = preprocess.fit_preprocess(x, 1)["measured"]
    assert abs(m["spacing"] / p.g1_px - 1) < 0.05 and abs(m["disk_radius"] / p.disk_radius_px - 1) < 0.05
    assert m["bragg_share"] < 0.01 and abs(m["background"]["fraction"] - 0.7) < 0.05


def test_the_default_preset_keeps_its_numbers(tmp_path_factory):
    # A clean cube: the figures issue 11 measured, unchanged (a background fit of ~0 is removed).
    clean, p = single_crystal(tmp_path_factory, "hexagonal")
    m = preprocess.fit_preprocess(clean, 1)["measured"]
    assert m["background"]["fraction"] < 0.02
    assert m["central_disk_radius"] == 3.0 and m["first_order_spacing"] == pytest.approx(p.g1_px, abs=1.0)


def test_no_bragg_disks_above_the_background_is_refused_with_the_figure(tmp_path_factory):
    # A monolayer at 1e4 e/pattern under w = 0.7: ~10 electrons per pattern in its Bragg disks.
    clean, _ = single_crystal(tmp_path_factory, "hexagonal", central_share=0.99)
    x = noise.add_noise(clean, 0.7, 1e4, np.random.default_rng(0))
    with pytest.raises(measure.MeasurementError) as e:
        preprocess.fit_preprocess(x, 1)
    text = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in text
    assert text.startswith("first-order spacing") and "no Bragg disks" in text and "above the background" in text
    level = float(re.search(r"background about (\d+) % of the counts", text).group(1))
    assert abs(level - 100 * 0.7) <= 5


def test_auto_noise_and_the_summary_line(tmp_path_factory):
    clean, _ = single_crystal(tmp_path_factory, "hexagonal", central_share=0.99)
    x = noise.add_noise(clean, 0.7, 1e7, np.random.default_rng(0))
    m = preprocess.fit_preprocess(x, 1)["measured"]
    counts = 1e7  # the dose the cube was made at (`ccstae train` reads it with noise.estimate_counts)
    levels = load_config("default")["train"]["noise_levels"]
    # Plenty of Bragg electrons, and the cube already at the highest configured level: trained at it
    # (injected levels come on top of the cube's own background: w0 + w (1 - w0)).
    strong = measure.choose_noise(m, counts, levels)
    assert strong["mode"] == "fixed" and strong["levels"] == [0.0] and "every configured level" in strong["why"]
    higher = measure.choose_noise(m, counts, levels + [0.85])
    w0 = m["background"]["fraction"]
    assert higher["mode"] == "mixed" and higher["levels"][0] == 0.0
    assert higher["levels"][-1] == pytest.approx((0.85 - w0) / (1 - w0), abs=0.01)
    weak = measure.choose_noise(m, 1e5, levels)  # ~100 electrons in the disks: the cube's own level
    assert weak["mode"] == "fixed" and weak["levels"] == [0.0] and "Bragg disks" in weak["why"]
    line = measure.summary(m, "hexagonal", counts, "mixed")
    assert "\n" not in line and "spacing" in line and "hexagonal" in line and "10,000,000 e/pattern" in line
    assert f"background {100 * m['background']['fraction']:.0f} %" in line
