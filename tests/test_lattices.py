"""The kinematic engine's lattices and crystals: square, rectangular, structure factors, central share."""
import math

import numpy as np
import pytest

from ccstae.physics import simulate
from ccstae.core.config import load_config


def sim(**over):
    return simulate.sim_params(dict(load_config("default")["simulate"], **over))


def shells(p):
    g, amp = simulate.reciprocal_lattice(p)
    return g * p.k_px, amp  # 1/Angstrom


def test_square_and_rectangular_lattices_put_first_orders_on_the_axes():
    g, _ = shells(sim(lattice="square", lattice_constant=3.9))
    np.testing.assert_allclose(sorted(np.abs(g[1:5]).max(axis=1)), [1 / 3.9] * 4)
    assert sorted(map(tuple, np.round(g[1:5] * 3.9, 6))) == [(-1, 0), (0, -1), (0, 1), (1, 0)]
    p = sim(lattice="rectangular", lattice_constant=3.0, lattice_constant_b=4.0)
    g, _ = shells(p)
    assert p.g1 == pytest.approx(1 / 4.0)  # the long axis gives the shortest reflection
    np.testing.assert_allclose(np.abs(g[1:3]), [[0, 0.25], [0, 0.25]], atol=1e-12)
    np.testing.assert_allclose(np.abs(g[3:5]), [[1 / 3, 0], [1 / 3, 0]], atol=1e-12)


def test_strain_moves_square_lattice_disks_as_the_convention_says():
    p = sim(lattice="square", lattice_constant=3.9)
    c = simulate.disk_centres(p, 0.02, 0.0, 0.0, 0.0)
    ref = simulate.disk_centres(p, 0.0, 0.0, 0.0, 0.0)
    along_x = np.argmax(ref[:, 1] - p.centre)  # a disk at +x (columns)
    assert c[along_x, 1] - p.centre == pytest.approx((ref[along_x, 1] - p.centre) / 1.02)


def test_structure_factors_of_crystals():
    # SrTiO3 [001]: (100) = f_Sr - f_Ti - f_O is weak, (110) = f_Sr + f_Ti + f_O... strong.
    p = sim(crystal="SrTiO3", lattice_constant=3.905, pattern=128)
    g, amp = shells(p)
    gabs = np.hypot(g[:, 0], g[:, 1])
    i100, i110 = amp[np.isclose(gabs, 1 / 3.905)], amp[np.isclose(gabs, math.sqrt(2) / 3.905)]
    assert len(i100) == 4 and len(i110) == 4 and i100.max() < 0.05 * i110.min()
    # Si along [110]: 002 and 111 reflections; the (001)-type and (1/2 1/2 0)-type are extinct.
    p = sim(crystal="Si110", lattice_constant=5.431, pattern=128)
    assert p.g1 == pytest.approx(math.sqrt(3) / 5.431)
    g, _ = shells(p)
    assert not np.any(np.isclose(np.hypot(g[:, 0], g[:, 1]), 1 / 5.431))
    # A MoS2 monolayer: six equally bright first-order disks, hexagonal with one along +x.
    p = sim(crystal="MoS2", lattice_constant=3.18)
    g, amp = shells(p)
    assert p.g1 == pytest.approx(2 / (math.sqrt(3) * 3.18))
    np.testing.assert_allclose(amp[1:7], amp[1])
    assert np.any(np.all(np.isclose(g[1:7], [p.g1, 0]), axis=1))


def test_central_share_is_the_central_disks_share_of_all_electrons():
    p = sim(crystal="MoS2", lattice_constant=3.18, central_share=0.99, intensity_decay=1.5)
    x = simulate.render_patterns(p, [0.0], [0.0], [0.0], [0.0])[0]
    rows, cols = np.mgrid[:p.pattern, :p.pattern]
    central = x[np.hypot(rows - p.centre, cols - p.centre) <= p.disk_radius_px + 2].sum()
    # the detector misses some scattered electrons, so on it the central disk holds a little more
    assert 0.99 < central < 0.995
    old = sim()  # central_share 0: the original central_disk ratio, unchanged
    assert simulate.reciprocal_lattice(old)[1][0] == pytest.approx(4.0 * math.exp(-2.0 * old.g1**2 / 4))


@pytest.mark.parametrize("ms, kin", [("ms-mos2", "kin-mos2"), ("ms-mos2-single", "kin-mos2-single"),
                                     ("ms-sto", "kin-sto")])
def test_kinematic_twin_presets_hold_the_same_sample(ms, kin):
    a, b = load_config(ms), load_config(kin)
    assert a["simulate"]["engine"] == "multislice" and b["simulate"]["engine"] == "kinematic"
    a["simulate"]["engine"] = b["simulate"]["engine"]
    for key in ("central_share", "intensity_decay", "disk_edge_px", "central_disk"):  # multislice ignores them
        a["simulate"][key] = b["simulate"][key]
    # The same sample, detector and preprocessing; the training recipe may differ (the kinematic engine
    # can draw a random pattern per strain and rotation, multislice renders scans).
    assert a["simulate"] == b["simulate"] and a["model"] == b["model"] and a["noise"] == b["noise"]
    np.testing.assert_array_equal(simulate.ground_truth_maps(a)["exx"], simulate.ground_truth_maps(b)["exx"])
