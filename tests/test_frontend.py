"""The detector-side front end: the integer preprocessing (ccstae/model/preprocess.py) and ccstae_top
(ccstae/firmware/frontend/), which must agree bit for bit from raw counts to the encoder's outputs.

One small random-weight encoder (16 x 16 input) is converted once; each front-end geometry
rebuilds only the front end (a few seconds), the encoder's object file is reused.
"""
import dataclasses
import json

import numpy as np
import pytest

from ccstae.firmware import frontend as fe
from ccstae.model import preprocess as pp
from ccstae.core.errors import UserError

from builders import random_weight_project

DISK = {"kind": "disk", "centre": [7.3, 7.6], "radius": 3.5}


def counts_for(params, n, seed=0, peak=40.0):
    """Poisson counts of smooth random patterns (a bright blob and a background), (n, P, P)."""
    rng = np.random.default_rng(seed)
    p = params.pattern
    yy, xx = np.mgrid[:p, :p] / p
    cx, cy = rng.uniform(0.3, 0.7, (2, n, 1, 1))
    lam = peak * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02) + rng.uniform(0, 5, (n, 1, 1))
    return rng.poisson(lam)


# ---------------------------------------------------------------- the Python reference (fast)

def test_lut_is_the_qkeras_input_quantizer_of_the_float_transfer():
    from qkeras import quantized_bits

    params = pp.PreprocessParams(pattern=32, binning=2, crop=1, scale=3.7e-3, counts_per_unit=1e5)
    lut = params.lut()
    n = np.arange(len(lut) + 50)
    v = np.sqrt(n.astype(np.float32) / np.float32(params.scale_counts))
    q = np.asarray(quantized_bits(8, 1, keep_negative=False, alpha=1)(v)) * 128
    assert np.array_equal(lut[np.minimum(n, len(lut) - 1)], q.astype(int))
    # The table ends where it saturates: the last entry is the top code, the one before is not.
    assert lut[-1] == 255 and lut[-2] < 255 and np.all(np.diff(lut.astype(int)) >= 0)


def test_integer_path_equals_the_float_path_quantized_on_poisson_counts():
    params = pp.PreprocessParams(pattern=36, binning=2, crop=1, scale=2e-3, counts_per_unit=1e4,
                                 mask=pp.mask_image(16, DISK) > 0)
    counts = counts_for(params, 50)
    x_int = pp.preprocess_integer(counts / 1e4, params)  # cube units (Poisson / C) -> counts again
    assert np.array_equal(x_int, pp.preprocess_counts(counts, params))
    x_float = pp.preprocess(counts / 1e4, params.scale, 2, 1, DISK)
    assert np.array_equal(x_int * 128, pp.quantize_input(x_float[...], 8, 1))
    assert np.all(x_int[:, ~params.keep()] == 0)


def test_runs_saved_before_the_integer_path_still_load(tmp_path):
    cfg = {"noise": {"counts": 1e5}, "quant": {"input_bits": 8, "input_integer": 1}}
    (tmp_path / "preprocess.json").write_text(json.dumps({"pattern": 64, "binning": 2, "crop": 1, "scale": 0.01}))
    p = pp.PreprocessParams.from_run(tmp_path, cfg)
    assert (p.size, p.mask, p.transfer, p.counts_per_unit, p.count_bits) == (30, None, "sqrt", 1e5, 16)
    # Issue 11's form: a disk mask described in preprocess.json becomes the mask image.
    (tmp_path / "preprocess.json").write_text(json.dumps({"pattern": 36, "binning": 2, "crop": 1, "scale": 0.01,
                                                          "lut": "sqrt", "mask": DISK}))
    p = pp.PreprocessParams.from_run(tmp_path, cfg)
    assert np.array_equal(p.keep(), pp.mask_image(16, DISK) > 0)


def test_bad_geometry_is_a_user_error():
    params = pp.PreprocessParams(pattern=36, binning=2, crop=1, scale=0.01, counts_per_unit=1e4)
    with pytest.raises(UserError, match="divide"):
        fe.check_geometry(params, 5)
    with pytest.raises(UserError, match="multiple or a divisor"):
        fe.check_geometry(pp.PreprocessParams(pattern=36, binning=3, crop=2, scale=0.01), 2)


# ---------------------------------------------------------------- the firmware, both C-simulations

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return random_weight_project(tmp_path_factory.mktemp("frontend") / "prj", seed=2)


@pytest.mark.parametrize("pattern,binning,crop,ppc,masked", [
    (54, 3, 1, 6, True),    # the ARINA mapping: 3 x 3 bins, 6 pixels per clock (2 bins per word)
    (36, 2, 1, 1, False),   # fewer pixels per clock than the binning: a bin spans words; no mask
])
def test_front_end_is_bit_exact_from_raw_counts(project, pattern, binning, crop, ppc, masked):
    prj, qenc = project
    params = pp.PreprocessParams(pattern=pattern, binning=binning, crop=crop, scale=1.5e-3, counts_per_unit=1e4,
                                 mask=pp.mask_image(16, DISK) > 0 if masked else None, count_bits=12)
    fe.write_frontend(prj, params, ppc)
    lib = fe.CompiledFrontend(prj)
    counts = counts_for(params, 40, seed=pattern)
    edges = np.stack(list(fe.edge_case_counts(params, counts[0]).values()))
    assert edges.max() == 4095 and edges[1].sum() == 4095 * pattern ** 2
    r = fe.compare_compiled(lib, qenc, params, np.concatenate([counts, edges]))
    assert r.exact and r.n_patterns == 40 + len(edges), r.report()
    assert np.unique(lib.predict(counts), axis=0).shape[0] > 30  # the outputs depend on the counts
    # Copies of the library side by side (csim.library_copies) give one library's bits.
    copies, lib.libs = lib.libs, lib.libs[:1]
    one = lib.predict(counts)
    lib.libs = copies + fe.library_copies(lib.lib_path, 1)
    np.testing.assert_array_equal(lib.predict(counts), one)
    # The comparison can fail: a LUT for another scale gives other outputs.
    other = dataclasses.replace(params, scale=3e-3)
    assert not fe.compare_compiled(lib, qenc, other, counts).exact
    if ppc == 6:  # the g++ testbench, on the same patterns
        fe.make_tb_data(prj, qenc, params, np.concatenate([counts, edges]))
        tb = fe.run_testbench(prj)
        assert tb.exact and tb.n_patterns == 40 + len(edges), tb.report()


# ---------------------------------------------------------------- the estimate (fast, no hls4ml)

def encoder_stub(ii=900, lut=100_000):
    from ccstae.firmware import estimate as E

    return E.finish({"kind": "stub", "clock_period_ns": 5.0, "ii_cycles": ii, "latency_cycles": ii + 20,
                     "total": {"LUT": lut, "FF": 20_000, "DSP": 0, "BRAM18": 40}})


def test_front_end_estimate_and_the_arina_at_its_raw_rate():
    from ccstae.firmware import frontend_estimate as FE
    from ccstae.studies.report import _frontend_markdown

    geometry = {"pattern": 64, "binning": 2, "crop": 1, "pixels_per_clock": 4, "count_bits": 16,
                "lut_depth": 2000, "lut_bits": 8}
    fe = FE.estimate_frontend(geometry)
    names = {p["name"]: p for p in fe["parts"]}
    assert names["input LUT ROM"]["BRAM18"] >= 1 and names["mask ROM"]["BRAM18"] + names["mask ROM"]["LUT"] > 0
    assert fe["cycles"] == {"read raw frame": 64 * 64 // 4, "crop + LUT": 32 * 32} and fe["total"]["DSP"] == 0
    rows = {r["key"]: r for r in FE.raw_rate_table(geometry, encoder_stub())}
    arina = rows["arina"]
    # 96 x 96 at 120 kHz = 1.1 Gpixel/s: 5.5 pixels per clock at 200 MHz -> 6, binned 3 x 3 to 32 x 32.
    assert (arina["binning"], arina["pixels_per_clock"], arina["ii_cycles"]) == (3, 6, 96 * 96 // 6)
    assert abs(arina["needed_pixels_per_clock"] - 120_000 * 96 * 96 / 200e6) < 1e-9
    assert arina["keeps_up_raw"] and arina["keeps_up_binned"] and arina["fits"]
    # An encoder slower than the camera keeps up at neither rate.
    slow = {r["key"]: r for r in FE.raw_rate_table(geometry, encoder_stub(ii=2000))}["arina"]
    assert not slow["keeps_up_raw"] and not slow["keeps_up_binned"]
    assert "Dectris ARINA" in "\n".join(_frontend_markdown([{"name": "q8-s0", "frontend": list(rows.values())}]))
