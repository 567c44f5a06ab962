"""The simulator: detector geometry, disk positions under strain, ground truth, scans on disk."""
import math

import numpy as np
import pytest

from ccstae.core import data_io
from ccstae.physics import scans, simulate
from ccstae.physics.strain import STRAIN_FRAME, swap_frame
from ccstae.core.config import load_config
from ccstae.core.errors import UserError


@pytest.fixture(scope="module")
def default_sim():
    return dict(load_config("default")["simulate"])


def test_relativistic_wavelength():
    # Textbook values: 1.9687 pm at 300 kV, 2.5079 pm at 200 kV.
    assert simulate.electron_wavelength(300) == pytest.approx(0.019687, abs=2e-6)
    assert simulate.electron_wavelength(200) == pytest.approx(0.025079, abs=2e-6)


def test_detector_geometry(default_sim):
    p = simulate.sim_params(default_sim)
    lam = simulate.electron_wavelength(default_sim["beam_energy_kv"])
    k_px = (150e-6 / 0.340) / lam
    assert p.k_px == pytest.approx(k_px)
    assert p.g1_px == pytest.approx(2 / (math.sqrt(3) * 3.16) / k_px)
    assert p.disk_radius_px == pytest.approx(1.3e-3 / lam / k_px)
    assert p.centre == 31.5


def expected_centres(sim, eps, theta, orders=2):
    """Disk centres (row, col) computed here from the physics, independently of the module."""
    lam = simulate.electron_wavelength(sim["beam_energy_kv"])
    k_px = (sim["detector_pixel_um"] * 1e-6 / (sim["camera_length_mm"] * 1e-3)) / lam
    g1 = 2 / (math.sqrt(3) * sim["lattice_constant"]) / k_px
    m = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) \
        @ np.linalg.inv(np.eye(2) + eps).T
    c = (sim["pattern"] - 1) / 2
    out = []
    for h in range(-orders, orders + 1):
        for k in range(-orders, orders + 1):
            x, y = m @ (g1 * np.array([h + k / 2, k * math.sqrt(3) / 2]))
            out.append((c + y, c + x))
    return np.array(out)


def centroid(img, row, col, half):
    r0, c0 = int(round(row)), int(round(col))
    win = img[r0 - half:r0 + half + 1, c0 - half:c0 + half + 1].astype(np.float64)
    rr, cc = np.mgrid[r0 - half:r0 + half + 1, c0 - half:c0 + half + 1]
    return (win * rr).sum() / win.sum(), (win * cc).sum() / win.sum()


def test_disk_centres_move_as_inverse_transpose_predicts(default_sim):
    exx, eyy, exy, theta = 0.02, -0.015, 0.01, 0.3
    eps = np.array([[exx, exy], [exy, eyy]])
    img = simulate.render_patterns(default_sim, exx, eyy, exy, theta)[0]
    p = simulate.sim_params(default_sim)
    half = int(math.ceil(p.disk_radius_px + 2.5))
    want = expected_centres(default_sim, eps, theta)
    unstrained = expected_centres(default_sim, np.zeros((2, 2)), theta)
    inside = np.all((want > half + 1) & (want < p.pattern - half - 2), axis=1)
    assert inside.sum() >= 7  # the central disk and at least the first ring
    fitted = np.array([centroid(img, r, c, half) for r, c in want[inside]])
    assert np.max(np.abs(fitted - want[inside])) < 0.1
    # The strain moves disks by far more than the tolerance, so the test can tell.
    assert np.max(np.abs(want[inside] - unstrained[inside])) > 0.5
    # disk_centres (used by the model author) agrees with the independent computation.
    got = simulate.disk_centres(default_sim, exx, eyy, exy, theta)
    for rc in want[inside]:
        assert np.min(np.hypot(*(got - rc).T)) < 1e-9


def test_convention_x_is_columns_and_tensile_strain_pulls_disks_in(default_sim):
    p = simulate.sim_params(default_sim)
    c = simulate.disk_centres(p, 0.01, 0.0, 0.0, 0.0)
    # the first-order disk on the +x axis sits on the centre row, g1 / (1 + exx) to the right
    target = np.array([p.centre, p.centre + p.g1_px / 1.01])
    assert np.min(np.hypot(*(c - target).T)) < 1e-9
    assert np.allclose(c[0], [p.centre, p.centre])  # central disk first, at the centre
    # theta > 0 turns +x towards +y, i.e. towards larger row indices
    c = simulate.disk_centres(p, 0, 0, 0, math.radians(10))
    target = p.centre + p.g1_px * np.array([math.sin(math.radians(10)), math.cos(math.radians(10))])
    assert np.min(np.hypot(*(c - target).T)) < 1e-9


def test_disk_centres_vectorised(default_sim):
    exx = np.array([0.0, 0.01, -0.02])
    c = simulate.disk_centres(default_sim, exx, 0 * exx, 0 * exx, 0 * exx)
    single = simulate.disk_centres(default_sim, 0.01, 0, 0, 0)
    assert c.shape == (3,) + single.shape
    assert np.allclose(c[1], single)


def test_patterns_normalised_with_central_disk_ratio(default_sim):
    p = simulate.sim_params(default_sim)
    x = simulate.render_patterns(p, np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
    assert x.dtype == np.float32 and x.shape == (3, 64, 64)
    assert np.allclose(x.sum(axis=(1, 2)), 1, atol=1e-5)
    img = x[0].astype(np.float64)
    rr, cc = np.mgrid[:64, :64]

    def disk_sum(row, col):
        return img[np.hypot(rr - row, cc - col) < p.disk_radius_px + 3].sum()

    central = disk_sum(p.centre, p.centre)
    first = disk_sum(p.centre, p.centre + p.g1_px)
    assert central / first == pytest.approx(default_sim["central_disk"], rel=0.01)
    # g = g1 + g2 = g1 (3/2, sqrt(3)/2): |g| = sqrt(3) g1, weaker by exp(-B (3 - 1) g1^2 / 4)
    second = disk_sum(p.centre + p.g1_px * math.sqrt(3) / 2, p.centre + 1.5 * p.g1_px)
    decay = math.exp(-default_sim["intensity_decay"] * 2 * p.g1**2 / 4)
    assert second / first == pytest.approx(decay, rel=0.01)


def test_jitter_shifts_whole_patterns(default_sim):
    sim = dict(default_sim, jitter_px=1.0, pattern=64)
    n = 200
    x = simulate.render_patterns(sim, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
                                 rng=np.random.default_rng(3))
    p = simulate.sim_params(sim)
    shifts = np.array([centroid(img, p.centre, p.centre, 6) for img in x]) - p.centre
    assert 0.8 < shifts.std() < 1.2
    assert abs(shifts.mean()) < 0.25


def test_ground_truth_maps(default_sim):
    gt = simulate.ground_truth_maps(default_sim)
    assert set(gt) == {"exx", "eyy", "exy", "theta", "grain"}
    for k in ("exx", "eyy", "exy", "theta"):
        assert gt[k].shape == (40, 40) and gt[k].dtype == np.float32
    assert gt["grain"].dtype == np.int32 and set(np.unique(gt["grain"])) <= set(range(6))
    for k in ("exx", "eyy", "exy"):
        assert np.abs(gt[k]).max() == pytest.approx(0.02, rel=1e-5)
        # smooth: neighbouring probe positions differ by a small fraction of the range
        assert np.abs(np.diff(gt[k], axis=0)).max() < 0.2 * 0.02
    bound = math.radians(default_sim["grain_rotation_deg"] + default_sim["rotation_field_deg"])
    assert np.abs(gt["theta"]).max() <= bound + 1e-6
    # within a grain theta varies only by the small rotation field
    for g in np.unique(gt["grain"]):
        t = gt["theta"][gt["grain"] == g]
        assert t.max() - t.min() <= 2 * math.radians(default_sim["rotation_field_deg"]) + 1e-6
    again = simulate.ground_truth_maps(default_sim)
    assert all(np.array_equal(gt[k], again[k]) for k in gt)
    other = simulate.ground_truth_maps(dict(default_sim, seed=1))
    assert not np.array_equal(gt["exx"], other["exx"])


@pytest.mark.parametrize("key, value", [("pattern", 4), ("strain_amplitude", -0.1), ("scan", [0, 3]),
                                        ("disk_edge_px", 0.0), ("n_grains", 1.5), ("beam_energy_kv", "300")])
def test_bad_config_values_name_the_key(default_sim, key, value):
    with pytest.raises(UserError, match=f"simulate.{key}"):
        simulate.sim_params(dict(default_sim, **{key: value}))


def test_disks_that_do_not_fit_are_refused(default_sim):
    with pytest.raises(UserError, match="camera_length_mm"):
        simulate.sim_params(dict(default_sim, camera_length_mm=2000.0))


def test_simulate_scan_clean_and_noisy(tmp_path):
    cfg = load_config("tiny")
    clean = scans.simulate_scan(cfg, tmp_path / "clean.h5", clean=True, progress=False)
    noisy = scans.simulate_scan(cfg, tmp_path / "noisy.h5", noise_w=0.5, counts=1e4, progress=False)
    gt = simulate.ground_truth_maps(cfg)
    stored = swap_frame(gt)  # cubes hold the user frame (docs/frame.md)
    with data_io.open_cube(clean) as a, data_io.open_cube(noisy) as b:
        assert a.shape == (12, 12, 32, 32) and a.attrs["clean"] and not b.attrs["clean"]
        assert b.attrs["noise_w"] == 0.5 and b.attrs["counts"] == 1e4 and a.attrs["seed"] == 0
        assert a.attrs["simulate.pattern"] == 32 and "ccstae_version" in a.attrs
        assert a.attrs["strain_frame"] == STRAIN_FRAME
        for k in gt:
            assert np.array_equal(a.ground_truth[k], stored[k])
        x = a.read_rows(3, 4)[0]
        want = simulate.render_patterns(cfg, gt["exx"][3], gt["eyy"][3], gt["exy"][3], gt["theta"][3])
        assert np.allclose(x, want, atol=1e-7)
        y = b.read_rows(3, 4)[0]
        assert not np.allclose(x, y)
        # the mean over the scan is close to the expected (1 - w) I + w L, up to shot noise
        assert np.isclose(y.sum(axis=(1, 2)).mean(), 1, atol=0.01)


def test_seed_reproduces_and_rows_limits(tmp_path):
    cfg = load_config("tiny")
    a = scans.simulate_scan(cfg, tmp_path / "a.h5", noise_w=0.2, seed=5, progress=False, rows=3)
    b = scans.simulate_scan(cfg, tmp_path / "b.h5", noise_w=0.2, seed=5, progress=False, rows=3)
    with data_io.open_cube(a) as ca, data_io.open_cube(b) as cb:
        assert ca.shape == (3, 12, 32, 32) and ca.ground_truth["exx"].shape == (3, 12)
        assert np.array_equal(ca.read_rows(0, 3), cb.read_rows(0, 3))
        assert ca.attrs["seed"] == 5


def test_existing_output_refused_and_failure_leaves_it_intact(tmp_path, monkeypatch):
    cfg = load_config("tiny")
    out = tmp_path / "cube.h5"
    out.write_bytes(b"precious")
    with pytest.raises(UserError, match="cube.h5"):
        scans.simulate_scan(cfg, out, progress=False)
    assert out.read_bytes() == b"precious"

    calls = []
    real = scans.render_patterns

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args, **kw)

    monkeypatch.setattr(scans, "render_patterns", failing)
    with pytest.raises(RuntimeError):
        scans.simulate_scan(cfg, out, overwrite=True, progress=False)
    assert out.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["cube.h5"]  # no temp file left behind
