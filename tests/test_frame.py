"""The frame of every strain map a user sees (docs/frame.md): py4DSTEM's. exx is the normal
strain along Qx = pattern axis 2 (and Rx = scan axis 0), eyy along Qy = axis 3, theta positive in
py4DSTEM's sense. Ground truth written by the simulator, maps computed from the disk positions
(here, by hand, in the cube's own (row, col) axes), our baseline and py4DSTEM's own get_strain
must agree; a transposed cube must give exx and eyy swapped and theta negated.
"""
import h5py
import numpy as np
import pytest

from ccstae.analysis import baseline
from ccstae.analysis.evaluate import truth_maps, write_strain_h5
from ccstae.core.config import load_config
from ccstae.core.cube_writer import write_cube
from ccstae.core.data_io import open_cube
from ccstae.physics import scans, simulate, strain

AVAILABLE, WHY = baseline.available()
needs_py4dstem = pytest.mark.skipif(not AVAILABLE, reason=WHY)

RX, RY = 4, 6
RIGHT = (slice(None), slice(RY // 2, None))  # the strained half; the left half is the reference
REGION = "0:4,0:3"
# The known strain of the right half in the USER frame: exx along Qx (pattern rows, axis 2).
KNOWN = {"exx": 0.012, "eyy": -0.004, "exy": 0.003, "theta": np.radians(3.0)}
# The same in the simulator's pattern frame (x along columns): exx and eyy written by hand
# swapped, theta the same. Not derived with strain.swap_frame: that is under test.
PATTERN_FRAME = {"exx": -0.004, "eyy": 0.012, "exy": 0.003, "theta": np.radians(3.0)}
# The whole sample is rotated by 7 degrees (the reference too): with a lattice vector exactly
# along a detector axis the baseline measures exx 0.0099 for 0.012 (a py4DSTEM fitting bias,
# not a frame question; tests/test_baseline.py uses 7 degrees as well).
REF_ROT = np.radians(7.0)


def uniform_maps():
    """The sample in the pattern frame (render_patterns' arguments): the left half the reference
    lattice rotated by REF_ROT; the right half strained so that, referenced to the left half,
    its strain is PATTERN_FRAME exactly (eps = R^T E R, as M_rel = R(3 deg)(I + R eps R^T)^-T)."""
    c, s = np.cos(REF_ROT), np.sin(REF_ROT)
    r = np.array([[c, -s], [s, c]])
    e = np.array([[PATTERN_FRAME["exx"], PATTERN_FRAME["exy"]], [PATTERN_FRAME["exy"], PATTERN_FRAME["eyy"]]])
    e = r.T @ e @ r
    gt = {k: np.zeros((RX, RY), np.float32) for k in ("exx", "eyy", "exy", "theta")}
    gt["exx"][RIGHT], gt["eyy"][RIGHT], gt["exy"][RIGHT] = e[0, 0], e[1, 1], e[0, 1]
    gt["theta"][:] = REF_ROT
    gt["theta"][RIGHT] += PATTERN_FRAME["theta"]
    gt["grain"] = np.zeros((RX, RY), np.int32)
    return gt


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """A noise-free cube written by simulate_scan (so its /ground_truth is the simulator's) whose
    sample is uniform_maps(): the left half unstrained, the right half KNOWN."""
    cfg = load_config("default")
    cfg["simulate"] = dict(cfg["simulate"], scan=[RX, RY])
    real = scans.ground_truth_maps  # simulate_scan's (ccstae/physics/scans.py) own name for it
    scans.ground_truth_maps = lambda p: uniform_maps()
    try:
        path = scans.simulate_scan(cfg, tmp_path_factory.mktemp("frame") / "cube.h5", clean=True, progress=False)
    finally:
        scans.ground_truth_maps = real
    with open_cube(path) as c:
        data, gt, attrs = c.read_rows(0, RX), c.ground_truth, c.attrs
    return data, gt, attrs, simulate.sim_params(cfg)


def disk_position_maps(p, transpose=False) -> dict:
    """Maps from the simulated disk positions alone, in the cube's own axes: q = (row, col) - c
    is (qx, qy); T with q' = T q_ref fitted over the disks (right half vs left), T = R U, eps =
    U^-1 - I, theta the rotation from qy towards qx (py4DSTEM's sense). No code of ours but the
    simulator's disk_centres. transpose: the same for the cube with its axes swapped."""
    gt = uniform_maps()
    centres = simulate.disk_centres(p, *(gt[k] for k in ("exx", "eyy", "exy", "theta")))  # (Rx, Ry, D, 2)
    q = centres - p.centre
    if transpose:
        q = np.swapaxes(q, 0, 1)[..., ::-1]  # scan Rx <-> Ry and pattern Qx <-> Qy
    ref = q[0, 0]  # a reference position: every left-half pattern is the same
    out = {k: np.zeros(q.shape[:2]) for k in strain.MAPS}
    for i in range(q.shape[0]):
        for j in range(q.shape[1]):
            t = np.linalg.lstsq(ref, q[i, j], rcond=None)[0].T  # q' = t q_ref
            u_, s, vt = np.linalg.svd(t)
            rot, sym = u_ @ vt, vt.T @ np.diag(s) @ vt
            eps = np.linalg.inv(sym) - np.eye(2)
            out["exx"][i, j], out["eyy"][i, j] = eps[0, 0], eps[1, 1]
            out["exy"][i, j] = 0.5 * (eps[0, 1] + eps[1, 0])
            out["theta"][i, j] = -np.arctan2(rot[1, 0], rot[0, 0])  # qx -> qy is negative in py4DSTEM
    return out


def test_disk_positions_carry_the_known_strain_along_the_cube_axes(cube):
    """The arbiter: the strain measured on the disks in (Qx, Qy) is KNOWN (not its transpose)."""
    *_, p = cube
    maps = disk_position_maps(p)
    for k, v in KNOWN.items():
        np.testing.assert_allclose(maps[k][RIGHT], v, atol=1e-7, err_msg=k)
        np.testing.assert_allclose(maps[k][:, :RY // 2], 0, atol=1e-7, err_msg=k)


def test_the_simulators_ground_truth_is_in_the_user_frame(cube):
    data, gt, attrs, p = cube
    assert attrs["strain_frame"] == strain.STRAIN_FRAME
    rendered = uniform_maps()  # as stored: the rendered (pattern-frame) maps with exx and eyy swapped
    for k, src in (("exx", "eyy"), ("eyy", "exx"), ("exy", "exy"), ("theta", "theta")):
        np.testing.assert_array_equal(gt[k], rendered[src], err_msg=k)
    truth, disks = truth_maps(gt, region=REGION), disk_position_maps(p)  # as scored
    for k in strain.MAPS:
        np.testing.assert_allclose(truth[k], disks[k], atol=1e-6, err_msg=k)
        np.testing.assert_allclose(truth[k][RIGHT], KNOWN[k], atol=1e-6, err_msg=k)


@needs_py4dstem
def test_baseline_and_py4dstem_get_strain_agree_with_the_truth(cube):
    data, gt, _, p = cube
    maps, info = baseline.baseline_maps(data, region=REGION)
    assert info["failed_fraction"] == 0
    truth, p4 = truth_maps(gt, region=REGION), info["p4_maps"]  # p4: py4DSTEM's get_strain, as it is
    for k in strain.MAPS:
        np.testing.assert_allclose(maps[k], truth[k], atol=2e-4, err_msg=k)
        # py4DSTEM's strain is infinitesimal: equal to second order, here mostly 1 - cos(3 deg) =
        # 1.4e-3 in exx and eyy (a swap of exx and eyy would be 0.016 off)
        np.testing.assert_allclose(p4[k], truth[k], atol=1.6e-3, err_msg=k)
        assert np.sign(p4[k][RIGHT].mean()) == np.sign(KNOWN[k]) == np.sign(maps[k][RIGHT].mean()), k


@needs_py4dstem
def test_a_transposed_cube_swaps_exx_and_eyy_and_negates_theta(cube, tmp_path):
    """The frame is tied to the axes, not to labels: swap Rx <-> Ry and Qx <-> Qy (a reflection)."""
    data, gt, _, p = cube
    maps, info = baseline.baseline_maps(data, region=REGION)
    data_t = np.ascontiguousarray(data.transpose(1, 0, 3, 2))
    maps_t, info_t = baseline.baseline_maps(data_t, region="0:3,0:4")
    assert info_t["failed_fraction"] == 0
    expect = {"exx": maps["eyy"].T, "eyy": maps["exx"].T, "exy": maps["exy"].T, "theta": -maps["theta"].T}
    for k in strain.MAPS:
        np.testing.assert_allclose(maps_t[k], expect[k], atol=1e-4, err_msg=k)
    p4, p4_t = info["p4_maps"], info_t["p4_maps"]  # py4DSTEM itself does the same
    p4_expect = {"exx": p4["eyy"].T, "eyy": p4["exx"].T, "exy": p4["exy"].T, "theta": -p4["theta"].T}
    for k in strain.MAPS:
        np.testing.assert_allclose(p4_t[k], p4_expect[k], atol=1e-4, err_msg=k)
    # ... and the disks of the transposed cube, measured by hand in its own axes
    disks_t = disk_position_maps(p, transpose=True)
    for k in strain.MAPS:
        np.testing.assert_allclose(maps_t[k], disks_t[k], atol=2e-4, err_msg=k)
    right_t = (slice(RY // 2, None), slice(None))
    assert maps_t["exx"][right_t].mean() == pytest.approx(KNOWN["eyy"], abs=2e-4)
    assert maps_t["theta"][right_t].mean() == pytest.approx(-KNOWN["theta"], abs=1e-4)
    # The transposed cube's ground truth, stored in the user frame, scores the same way.
    gt_t = {"exx": gt["eyy"].T, "eyy": gt["exx"].T, "exy": gt["exy"].T, "theta": -gt["theta"].T}
    with open_cube(write_cube(tmp_path / "t.h5", data_t, gt_t)) as c:
        truth_t = truth_maps(c.ground_truth, region="0:3,0:4")
    for k in strain.MAPS:
        np.testing.assert_allclose(maps_t[k], truth_t[k], atol=2e-4, err_msg=k)


def test_the_matrices_of_a_transposed_pattern_give_the_reflected_maps():
    """strain.py alone: M in the pattern frame of a transposed pattern is P M P."""
    rng = np.random.default_rng(0)
    gt = {k: rng.uniform(-0.02, 0.02, (3, 5)) for k in ("exx", "eyy", "exy")}
    gt["theta"] = rng.uniform(-0.3, 0.3, (3, 5))
    m = strain.ground_truth_matrices(gt)
    back = strain.polar_strain(m)
    for k in strain.MAPS:
        np.testing.assert_allclose(back[k], gt[k], atol=1e-12)
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])
    reflected = strain.polar_strain(swap @ m @ swap)
    for k, want in (("exx", gt["eyy"]), ("eyy", gt["exx"]), ("exy", gt["exy"]), ("theta", -gt["theta"])):
        np.testing.assert_allclose(reflected[k], want, atol=1e-12, err_msg=k)
    pattern = strain.polar_strain(m, frame="pattern")  # the simulator's own labels
    np.testing.assert_allclose(pattern["exx"], gt["eyy"], atol=1e-12)
    np.testing.assert_allclose(pattern["theta"], gt["theta"], atol=1e-12)
    with pytest.raises(ValueError, match="frame"):
        strain.polar_strain(m, frame="scan")


def test_old_simulated_cubes_are_read_in_the_user_frame(tmp_path):
    """A cube our simulator wrote before the frame was settled (no strain_frame) stored the
    pattern frame: reading swaps it; a cube with the attribute, or from anyone else, is as it is."""
    data = np.zeros((2, 2, 8, 8), np.float32)
    gt = {"exx": np.full((2, 2), 0.01, np.float32), "eyy": np.full((2, 2), -0.02, np.float32),
          "exy": np.zeros((2, 2), np.float32), "theta": np.full((2, 2), 0.1, np.float32)}
    old = write_cube(tmp_path / "old.h5", data, gt, attrs={"created_by": "ccstae simulate"})
    new = write_cube(tmp_path / "new.h5", data, gt, attrs={"created_by": "ccstae simulate",
                                                           "strain_frame": strain.STRAIN_FRAME})
    other = write_cube(tmp_path / "other.h5", data, gt)
    with open_cube(old) as a, open_cube(new) as b, open_cube(other) as c:
        assert a.ground_truth["exx"][0, 0] == pytest.approx(-0.02) and a.ground_truth["theta"][0, 0] == pytest.approx(0.1)
        assert b.ground_truth["exx"][0, 0] == pytest.approx(0.01)
        assert c.ground_truth["exx"][0, 0] == pytest.approx(0.01)


def test_strain_files_record_the_frame(tmp_path):
    maps = {k: np.zeros((2, 3)) for k in strain.MAPS}
    write_strain_h5(tmp_path / "s.h5", maps, {"model": "m"})
    with h5py.File(tmp_path / "s.h5") as f:
        assert f.attrs["strain_frame"] == strain.STRAIN_FRAME
