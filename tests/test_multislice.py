"""The multislice engine (abTEM) on the ms-tiny preset: physics of the patterns, resume, errors."""
import subprocess
import sys

import h5py
import numpy as np
import pytest

from ccstae.physics import scans, simulate, strain
from ccstae.core.config import load_config
from ccstae.core.errors import UserError

pytest.importorskip("abtem")


def ms_config(**sim):
    cfg = load_config("ms-tiny")
    cfg["simulate"].update(sim)
    return cfg


def disk_centroid(img, centre, radius):
    rows, cols = np.mgrid[:img.shape[0], :img.shape[1]]
    w = img * (((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) <= radius**2)
    return np.array([(w * rows).sum(), (w * cols).sum()]) / w.sum(), w.sum()


@pytest.fixture(scope="module")
def grain_scan(tmp_path_factory):
    # One grain rotated by several degrees and a 4 % strain field: disks move by up to ~2 px.
    cfg = ms_config(grain_rotation_deg=10.0, strain_amplitude=0.04, seed=3)
    out = scans.simulate_scan(cfg, tmp_path_factory.mktemp("ms") / "ms.h5", clean=True, progress=False)
    with h5py.File(out) as f:
        data = f["datacube"][:]
        # stored in the user frame; disk_centres takes the pattern frame (docs/frame.md)
        gt = strain.swap_frame({k: f["ground_truth"][k][:] for k in ("exx", "eyy", "exy", "theta")})
        detected = f["detected_fraction"][:]
        assert f.attrs["engine"] == "multislice"
    return cfg, data, gt, detected


def test_patterns_sum_to_one_and_central_disk_dominates(grain_scan):
    cfg, data, gt, detected = grain_scan
    p = simulate.sim_params(cfg)
    assert data.shape == (4, 4, 32, 32)
    np.testing.assert_allclose(data.sum(axis=(2, 3)), 1.0, atol=1e-5)
    assert np.all(detected > 0.98)  # the detector catches nearly every electron of a monolayer
    centres = simulate.disk_centres(p, gt["exx"], gt["eyy"], gt["exy"], gt["theta"])  # (4, 4, D, 2)
    radius = p.disk_radius_px + 1.5
    central = [disk_centroid(data[i, j], centres[i, j, 0], radius)[1] for i in range(4) for j in range(4)]
    first = [disk_centroid(data[i, j], centres[i, j, k], radius)[1] for i in range(4) for j in range(4)
             for k in range(1, 7)]
    # A MoS2 monolayer: ~99 % of the electrons stay in the central disk, each first-order disk ~0.05 %.
    assert 0.98 < np.mean(central) < 0.999
    assert 1e-4 < np.mean(first) < 2e-3
    assert np.std(first) / np.mean(first) < 0.1  # the six {100} disks of a monolayer are equally bright


def test_disks_follow_the_ground_truth_strain_and_rotation(grain_scan):
    cfg, data, gt, _ = grain_scan
    p = simulate.sim_params(cfg)
    centres = simulate.disk_centres(p, gt["exx"], gt["eyy"], gt["exy"], gt["theta"])
    unstrained = simulate.disk_centres(p, 0, 0, 0, 0)
    radius = p.disk_radius_px + 1.5
    err, moved = [], []
    for i in range(4):
        for j in range(4):
            for k in range(1, 7):
                err.append(disk_centroid(data[i, j], centres[i, j, k], radius)[0] - centres[i, j, k])
                moved.append(np.hypot(*(centres[i, j, k] - unstrained[k])))
    assert max(moved) > 1.0  # the sample really moves the disks...
    assert np.abs(np.array(err)).max() < 0.1  # ...and they sit where R(theta)(I+eps)^-T g puts them


def test_an_interrupted_run_resumes_and_noise_levels_share_one_run(tmp_path, monkeypatch):
    from ccstae.physics import multislice

    cfg = ms_config(scan=[3, 2])
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    whole = scans.simulate_scan(cfg, tmp_path / "a" / "w.h5", noise_w=0.2, counts=1e4, progress=False)
    real_row = multislice.Engine.row
    done = []

    def failing_row(self, r, jitter=None):
        if r == 2:
            raise KeyboardInterrupt
        done.append(r)
        return real_row(self, r, jitter)

    out = tmp_path / "b" / "w.h5"
    monkeypatch.setattr(multislice.Engine, "row", failing_row)
    with pytest.raises(KeyboardInterrupt):
        scans.simulate_scan(cfg, out, noise_w=0.2, counts=1e4, progress=False)
    assert not out.exists() and len(list((tmp_path / "b").glob(".ms-clean-*.h5.partial"))) == 1
    done.clear()
    monkeypatch.setattr(multislice.Engine, "row",
                        lambda self, r, jitter=None: (done.append(r), real_row(self, r, jitter))[1])
    scans.simulate_scan(cfg, out, noise_w=0.2, counts=1e4, progress=False)
    assert done == [2]  # only the missing row was simulated again
    assert not list((tmp_path / "b").glob("*.partial"))
    with h5py.File(whole) as a, h5py.File(out) as b:
        np.testing.assert_array_equal(a["datacube"][:], b["datacube"][:])
        np.testing.assert_array_equal(a["ground_truth/exx"][:], b["ground_truth/exx"][:])
        assert b.attrs["noise_w"] == 0.2 and b.attrs["counts"] == 1e4 and not b.attrs["clean"]
    done.clear()  # another noise level and dose of the same sample: no multislice at all
    other = scans.simulate_scan(cfg, tmp_path / "b" / "w5.h5", noise_w=0.5, counts=1e3, progress=False)
    assert done == []
    with h5py.File(other) as f, h5py.File(out) as g:
        assert f.attrs["noise_w"] == 0.5 and not np.array_equal(f["datacube"][:], g["datacube"][:])


def test_multislice_needs_atoms_and_a_displacement_field():
    with pytest.raises(UserError, match="simulate.crystal"):
        simulate.sim_params(dict(load_config("default")["simulate"], engine="multislice"))
    with pytest.raises(UserError, match="simulate.strain_field"):
        simulate.sim_params(dict(load_config("ms-tiny")["simulate"], strain_field="independent"))


def test_missing_abtem_is_one_line_naming_the_extra(tmp_path):
    code = ("import sys; sys.modules['abtem'] = None; sys.argv = ['ccstae', 'simulate', '--preset', 'ms-tiny', "
            f"'--out', '{tmp_path / 'x.h5'}']; from ccstae import cli; sys.exit(cli.main())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and ".[multislice]" in res.stderr
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.h5.partial").exists()


def test_the_kinematic_twin_matches_multislice_on_the_same_sample(grain_scan, tmp_path):
    """Same config, other engine: the same ground truth, and patterns within stated tolerances.

    Tolerances: disk centroids within 0.1 px (the issue's target); the central disk's share of the
    detected counts within 0.002 and the mean first-order disk within 15 %: the kinematic twin has
    two specimen numbers (central_share, intensity_decay) calibrated on ms-tiny's own sample and
    settings, and the fits on other samples differ by ~10 % in first-order share (bench_engines).
    """
    from ccstae.physics import disks

    cfg, ms, gt, _ = grain_scan
    cfg = dict(cfg, simulate=dict(cfg["simulate"], engine="kinematic"))
    out = scans.simulate_scan(cfg, tmp_path / "kin.h5", clean=True, progress=False)
    with h5py.File(out) as f:
        kin = f["datacube"][:]
        stored = strain.swap_frame(gt)
        for k in gt:
            np.testing.assert_array_equal(f["ground_truth"][k][:], stored[k])
    p = simulate.sim_params(cfg)
    c = disks.compare(disks.measure(kin, p, gt), disks.measure(ms, p, gt))
    assert c["disk_position_error_px_max"] < 0.1
    assert abs(c["central_share"][0] - c["central_share"][1]) < 0.002
    assert abs(c["first_order_ratio"] - 1) < 0.15


def test_parallel_noise_levels_share_one_clean_run(tmp_path, monkeypatch):
    # A study makes the test cubes of one sample at several noise levels at once: one clean
    # multislice run, rendered once, the other worker waiting for it (it used to fail on the rename).
    from concurrent.futures import ThreadPoolExecutor

    from ccstae.physics import multislice

    cfg = ms_config(scan=[2, 2])
    real_init, built = multislice.Engine.__init__, []
    monkeypatch.setattr(multislice.Engine, "__init__", lambda self, p: (built.append(1), real_init(self, p))[1])
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda w: scans.simulate_scan(cfg, tmp_path / f"w{w}.h5", noise_w=w, counts=1e4,
                                                               progress=False), [0.0, 0.5]))
    assert len(built) == 1 and all(p.exists() for p in paths)
    assert not list(tmp_path.glob("*.partial"))


def test_the_engine_computes_here_even_beside_a_dask_client(tmp_path):
    # Inside a study's Dask worker a client is dask's default scheduler: abTEM's arrays went to the
    # study's own cluster and deadlocked once its workers were busy. A cluster with no workers at all
    # makes that wait forever; the engine must finish on this process's threads instead.
    import threading

    from distributed import Client, LocalCluster

    cfg, done = ms_config(scan=[1, 2]), []
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, Client(cluster):
        worker = threading.Thread(target=lambda: done.append(
            scans.simulate_scan(cfg, tmp_path / "x.h5", progress=False)), daemon=True)
        worker.start()
        worker.join(120)
    assert done and done[0].exists()


def test_a_noisy_multislice_cubes_twin_is_its_cached_clean_run(tmp_path, monkeypatch):
    from ccstae.analysis import floor
    from ccstae.physics import multislice

    cfg = ms_config(scan=[3, 2])
    noisy = scans.simulate_scan(cfg, tmp_path / "n.h5", noise_w=0.3, counts=1e4, progress=False)
    clean = next(tmp_path.glob(".ms-clean-*.h5"))
    monkeypatch.setattr(multislice.Engine, "row", lambda *a, **k: pytest.fail("rendered again"))
    twin = floor.noise_free_twin(noisy, n=6)
    with h5py.File(clean) as f:
        np.testing.assert_array_equal(twin, f["datacube"][:].reshape(6, *twin.shape[1:]))
    assert floor.cube_noise_floor(noisy, n=6)["bragg_counts"] > 0
