"""The spatial transformer against analytic warps, and strain extraction against known fields."""
import numpy as np
import pytest

from ccstae.model import network, stn
from ccstae.physics import strain

P = 32
C = (P - 1) / 2
ROWS, COLS = np.mgrid[:P, :P]


def disk(x, y, r=3.0, edge=0.5):
    """A soft disk centred at (x, y) = (col - c, row - c)."""
    return (0.5 * (1 - np.tanh((np.hypot(COLS - C - x, ROWS - C - y) - r) / edge))).astype(np.float32)


def centroid(img):
    w = img.sum()
    return np.array([(img * (COLS - C)).sum() / w, (img * (ROWS - C)).sum() / w])


def run_warp(img, m):
    return stn.warp(img[None, ..., None], np.asarray(m, np.float32)[None]).numpy()[0, ..., 0]


def test_identity_gives_back_the_input():
    img = np.random.default_rng(0).random((P, P)).astype(np.float32)
    np.testing.assert_allclose(run_warp(img, np.eye(2)), img, atol=1e-6)


@pytest.mark.parametrize("m", [[[1.05, 0], [0, 1.0]], [[1.0, 0.03], [0.03, 0.97]],
                               [[np.cos(0.2), -np.sin(0.2)], [np.sin(0.2), np.cos(0.2)]]])
def test_known_affine_moves_a_disk_where_it_should(m):
    m = np.asarray(m)
    g = np.array([9.0, 4.0])
    # A pattern whose spot sits at M g: warping it by M brings the spot back to g,
    # and warping a spot at g by M^-1 puts it at M g.
    pattern = disk(*(m @ g))
    np.testing.assert_allclose(centroid(run_warp(pattern, m)), g, atol=0.05)
    np.testing.assert_allclose(centroid(run_warp(disk(*g), np.linalg.inv(m))), m @ g, atol=0.05)


def test_matrices_from_raw_matches_the_tf_affine():
    raw = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    sx, sy, sh, rot = network.bound_affine(raw.astype(np.float64))
    tf_m = stn.affine_matrix(*[np.asarray(v, np.float32) for v in (sx, sy, sh, rot)]).numpy()
    np.testing.assert_allclose(network.matrices_from_raw(raw), tf_m, atol=1e-6)


def test_bounds_hold_for_any_raw_output():
    sx, sy, sh, rot = network.bound_affine(np.array([[-50.0, 50, 50, -50]]))
    assert 0.95 <= sx[0] <= 1.05 and 0.95 <= sy[0] <= 1.05
    assert abs(sh[0]) <= 0.1 and abs(rot[0]) <= np.pi / 6


def test_strain_extraction_recovers_a_known_affine_field_exactly():
    rng = np.random.default_rng(2)
    shape = (7, 9)
    truth = {k: rng.uniform(-0.03, 0.03, shape) for k in ("exx", "eyy", "exy")}
    truth["theta"] = rng.uniform(-0.4, 0.4, shape)
    m = strain.ground_truth_matrices(truth)
    recovered = strain.polar_strain(m)
    for k in strain.MAPS:
        np.testing.assert_allclose(recovered[k], truth[k], atol=1e-12)
    # Referencing: a reference lattice off by any M0 cancels out of the referenced maps
    # (exactly for the mean matrix of the region).
    m0 = strain.ground_truth_matrices({"exx": 0.01, "eyy": -0.02, "exy": 0.005, "theta": 0.3})
    a = strain.strain_maps(m @ np.linalg.inv(m0), "0:3,0:4")
    b = strain.strain_maps(m, "0:3,0:4")
    for k in strain.MAPS:
        np.testing.assert_allclose(a[k], b[k], atol=1e-12)


def test_rotation_errors_wrap_modulo_sixty_degrees():
    pred = {k: np.zeros(3) for k in strain.MAPS}
    truth = {k: np.zeros(3) for k in strain.MAPS}
    truth["theta"] = np.radians([59.0, -61.0, 10.0])
    np.testing.assert_allclose(strain.errors(pred, truth)["theta"], [1.0, 1.0, 10.0], atol=1e-9)


def test_bad_reference_region_is_a_user_error():
    from ccstae.core.errors import UserError

    with pytest.raises(UserError, match="outside the scan"):
        strain.parse_region("0:50,0:2", (10, 10))
    with pytest.raises(UserError, match="r0:r1,c0:c1"):
        strain.parse_region("rows", (10, 10))


def test_calibration_reads_a_shrunk_map_and_wraps_rotations():
    from ccstae.analysis.evaluate import calibration

    rng = np.random.default_rng(0)
    truth = {k: rng.normal(0, 0.01, (20, 20)) for k in ("exx", "eyy", "exy")}
    truth["theta"] = rng.normal(0, 0.05, (20, 20))
    pred = {k: 0.5 * v + rng.normal(0, 1e-4, v.shape) for k, v in truth.items()}
    pred["theta"] = truth["theta"] + np.pi / 3 * rng.integers(-1, 2, (20, 20))  # equal modulo 60 degrees
    c = calibration(pred, truth)
    for k in ("exx", "eyy", "exy"):
        assert c["slope"][k] == pytest.approx(0.5, abs=0.01) and c["correlation"][k] > 0.99
    assert c["slope"]["theta"] == pytest.approx(1.0) and c["correlation"]["theta"] == pytest.approx(1.0)
    flat = calibration({k: np.zeros_like(v) for k, v in truth.items()}, truth)
    assert flat["slope"]["exx"] == 0 and np.isnan(flat["correlation"]["exx"])
