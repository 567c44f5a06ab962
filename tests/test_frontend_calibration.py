"""The front end with a session's calibration (ccstae/firmware/frontend_session.py): bad raw pixels read 0
and each pattern's window moves by its origin shift, bit for bit the same in the Python integer
reference (model/preprocess.py) and both C-simulations (ctypes library, g++ testbench), on a simulated
session with a descan and bad pixels (physics/distort.py) calibrated by `ccstae calibrate`."""
import dataclasses

import h5py
import numpy as np
import pytest

from ccstae.core.config import load_config
from ccstae.core.data_io import open_cube
from ccstae.firmware import frontend as fe
from ccstae.firmware import frontend_session as fs
from ccstae.model import preprocess as pp
from ccstae.physics import calibrate, scans

from builders import random_weight_project

SCAN = (32, 32)  # 1,024 patterns per level
LEVELS = (0.0, 0.5)
SESSION = dict(descan_px=20.0, bad_pixel_fraction=0.001)
DISK = {"kind": "disk", "centre": [7.3, 7.6], "radius": 3.5}


def session_cube(path, seed, noise_w, **distortion):
    cfg = load_config("default")
    cfg["simulate"] = dict(cfg["simulate"], scan=list(SCAN), seed=seed)
    cfg["distortion"] = dict(cfg["distortion"], **distortion)
    return scans.simulate_scan(cfg, path, noise_w=noise_w, progress=False), cfg


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One simulated session per noise level (seed 9: no choice was made on it), the calibration
    `ccstae calibrate` measures on the first (the microscope's, so the same for every level), and the
    counts a detector delivers."""
    tmp = tmp_path_factory.mktemp("session")
    levels, cal = {}, None
    for w in LEVELS:
        path, cfg = session_cube(tmp / f"w{w}.h5", seed=9, noise_w=w, **SESSION)
        with open_cube(path) as cube:
            cal = cal or calibrate.calibrate_cube(cube)
            counts = pp.to_counts(cube.read_patterns(np.arange(len(cube))), cfg["noise"]["counts"])
        with h5py.File(path) as f:
            truth = {k: f["distortion"][k][()] for k in ("origin", "bad_pixels")}
        levels[w] = cal, counts, truth
    return levels


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One random-weight 16 x 16 encoder, converted once."""
    return random_weight_project(tmp_path_factory.mktemp("frontend") / "prj", seed=3)


def run_params(binning, crop, masked=True):
    size = 64 // binning - 2 * crop
    return pp.PreprocessParams(pattern=64, binning=binning, crop=crop, scale=1.5e-3, counts_per_unit=1e5,
                               mask=pp.mask_image(size, DISK) > 0 if masked else None)


def test_reference_windows_and_bad_pixels():
    """The integer reference: a shifted window reads the binned frame moved by (dy, dx), 0 outside;
    bad pixels read 0 before the binning; no shift is the plain crop."""
    params = dataclasses.replace(run_params(2, 3, masked=False), origin_shift=True)
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, (3, 64, 64))
    binned = pp.bin_patterns(counts, 2)
    got = pp.bin_counts(counts, params, [[0, 0], [2, -3], [-40, 0]])
    assert np.array_equal(got[0], pp.crop_patterns(binned[0], 3)) and not got[2].any()
    padded = np.pad(binned[1], 8)
    assert np.array_equal(got[1], padded[8 + 3 + 2:8 + 3 + 2 + 26, 8 + 3 - 3:8 + 3 - 3 + 26])
    assert np.array_equal(pp.bin_counts(counts, params), pp.crop_patterns(binned, 3))
    bad = np.zeros((64, 64), bool)
    bad[10, 11] = True
    with_bad = pp.bin_counts(counts, dataclasses.replace(params, bad_pixels=bad))
    assert (pp.bin_counts(counts, params) - with_bad)[:, 5 - 3, 5 - 3].tolist() == counts[:, 10, 11].tolist()
    with pytest.raises(ValueError, match="origin shifts"):
        pp.bin_counts(counts, run_params(2, 3), [[0, 0]] * 3)


def check_session(prj, qenc, session, binning, crop, ppc, per_level, testbench):
    """Both levels (per_level patterns each) and the edge cases through the ctypes library, and
    optionally a slice of them through the g++ testbench."""
    lib = None
    for w, (cal, counts, truth) in session.items():
        params = fs.session_params(run_params(binning, crop), cal)
        if lib is None:
            geometry = fe.write_frontend(prj, params, ppc)
            lib = fe.CompiledFrontend(prj)
            assert geometry["origin_shift"] and geometry["bad_pixels"] and lib.origin_shift
        # calibrate found the simulator's bad pixels; the shifts span the 20 px descan
        assert np.array_equal(params.bad_pixels, truth["bad_pixels"] > 0)
        shifts = fs.origin_shifts(cal, binning)
        assert np.ptp(shifts, axis=0).max() >= SESSION["descan_px"] // binning - 1
        counts, shifts = counts[:per_level], shifts[:per_level]
        r = fe.compare_compiled(lib, qenc, params, counts, shifts)
        assert r.exact and r.n_patterns == len(counts), r.report()
    # Edge cases: every edge shift on a pattern, a hot-pixel frame and a saturated one.
    edges = fs.edge_shifts(params)
    frames = np.stack([counts[0], *list(fe.edge_case_counts(params, counts[0]).values())[1:3]])
    e_counts = np.repeat(frames, len(edges), axis=0)
    e_shifts = np.tile(edges, (len(frames), 1))
    r = fe.compare_compiled(lib, qenc, params, e_counts, e_shifts)
    assert r.exact, r.report()
    # The comparison can fail: the window moved by one more pixel gives other outputs.
    assert not np.array_equal(lib.predict(counts[:50], shifts[:50] + 1), fe.reference(qenc, params, counts[:50], shifts[:50]))
    if testbench:
        tb_counts = np.concatenate([counts[:200], e_counts])
        tb_shifts = np.concatenate([shifts[:200], e_shifts])
        fe.make_tb_data(prj, qenc, params, tb_counts, tb_shifts)
        tb = fe.run_testbench(prj)
        assert tb.exact and tb.n_patterns == len(tb_counts), tb.report()


def test_bit_exact_on_a_calibrated_session(project, session):
    """No crop: every shifted window leaves the frame; 2 bins per word (two banks); all 1,024 patterns
    of each level, and the g++ testbench."""
    check_session(*project, session, binning=4, crop=0, ppc=8, per_level=len(session[LEVELS[0]][1]), testbench=True)
    assert len(session[LEVELS[0]][1]) >= 1000


def test_bit_exact_when_a_bin_spans_words(project, session):
    """1 pixel per clock, 2 x 2 bins: a bin spans two words; crop 8 keeps the descan inside the frame."""
    check_session(*project, session, binning=2, crop=8, ppc=1, per_level=100, testbench=False)


def test_calibration_off_is_the_plain_front_end():
    """Without a calibration the header compiles the logic out (tests/test_frontend.py builds and checks
    that front end), and the geometry says so."""
    params = run_params(4, 0)
    text = fe.params_header(params, 8)
    assert "#define CCSTAE_BAD_PIXELS 0" in text and "#define CCSTAE_ORIGIN_SHIFT 0" in text
    assert "bool RAW_KEEP" not in text
    geometry = fe.geometry(params, 8)
    assert not geometry["bad_pixels"] and not geometry["origin_shift"]


def test_estimate_of_the_calibration_logic():
    """Off: the estimate is the plain front end's. On: a bad-pixel ROM, the ping-pong binned frame and
    one more process, and the ARINA still keeps up at its raw rate (the raw frame's read stays the II)."""
    from ccstae.firmware import estimate as E
    from ccstae.firmware import frontend_estimate as FE

    encoder = E.finish({"kind": "stub", "clock_period_ns": 5.0, "ii_cycles": 900, "latency_cycles": 920,
                        "total": {"LUT": 100_000, "FF": 20_000, "DSP": 0, "BRAM18": 40}})
    plain = {"pattern": 64, "binning": 2, "crop": 1, "pixels_per_clock": 4, "count_bits": 16, "lut_depth": 2000,
             "lut_bits": 8}
    off = FE.estimate_frontend(dict(plain, bad_pixels=False, origin_shift=False))
    assert off == {**FE.estimate_frontend(plain), "geometry": off["geometry"]}
    on = FE.estimate_frontend(dict(plain, bad_pixels=True, origin_shift=True))
    names = {p["name"] for p in on["parts"]} - {p["name"] for p in off["parts"]}
    assert {"bad-pixel ROM + gates", "binned frame (ping-pong)"} <= names
    assert on["total"]["BRAM18"] > off["total"]["BRAM18"] and on["ii_cycles"] == off["ii_cycles"]
    assert on["extra_latency_cycles"] == (32 - 2) ** 2
    arina = {r["key"]: r for r in FE.raw_rate_table(dict(plain, bad_pixels=True, origin_shift=True), encoder)}["arina"]
    assert arina["keeps_up_raw"] and arina["ii_cycles"] == 96 * 96 // arina["pixels_per_clock"]
