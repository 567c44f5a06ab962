"""Resource/latency estimator: hand-counted cases, structure (reuse, bits, sparsity, clock), calibration machinery.

Weights are set by hand to values that are neither zero nor a power of two (3/128, -5/128 on the
8-bit grid), so every weight costs exactly one multiplier; no hls4ml compile() anywhere.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from tensorflow import keras

from ccstae.firmware import estimate as E
from ccstae.firmware import fabric as F
from ccstae.firmware.convert import FirmwareSpec, convert

C = E.DEFAULTS
W_A, W_B = 3 / 128, -5 / 128  # on quantized_bits(8, 0)'s grid, not powers of two


def _qmodel(shape, body):
    import qkeras as q

    inp = keras.Input(shape, name="pattern")
    x = q.QActivation(q.quantized_bits(8, 1, keep_negative=False, alpha=1), name="input_quant")(inp)
    x = body(x)
    x = q.QActivation(q.quantized_bits(16, 3, alpha=1), name="out_quant")(x)
    return keras.Model(inp, x)


def dense_model(n_in=8, n_out=4, zero_half=False):
    import qkeras as q

    def body(x):
        return q.QDense(n_out, kernel_quantizer=q.quantized_bits(8, 0, alpha=1),
                        bias_quantizer=q.quantized_bits(8, 2, alpha=1), name="dense")(x)

    m = _qmodel((n_in,), body)
    k = np.where(np.arange(n_in * n_out).reshape(n_in, n_out) % 2, W_A, W_B)
    if zero_half:
        k[:, ::2] = 0.0
    m.get_layer("dense").set_weights([k, np.zeros(n_out)])
    return m


def conv_model(h=8, w=8, n_chan=2, n_filt=4, zero_half=False):
    import qkeras as q

    def body(x):
        return q.QConv2D(n_filt, 3, kernel_quantizer=q.quantized_bits(8, 0, alpha=1),
                         bias_quantizer=q.quantized_bits(8, 2, alpha=1), name="conv")(x)

    m = _qmodel((h, w, n_chan), body)
    k = np.where(np.arange(9 * n_chan * n_filt).reshape(3, 3, n_chan, n_filt) % 2, W_A, W_B)
    if zero_half:
        k[..., ::2] = 0.0
    m.get_layer("conv").set_weights([k, np.zeros(n_filt)])
    return m


def est_of(model, tmp_path, constants=None, **spec):
    hls_model = convert(model, FirmwareSpec(**spec), tmp_path / "prj")
    return E.estimate(hls_model, constants=constants)


def layer(est, name):
    return next(d for d in est["layers"] if d["name"] == name)


def test_dense_multipliers_by_hand(tmp_path):
    hls_model = convert(dense_model(), FirmwareSpec(), tmp_path / "prj")
    est = E.estimate(hls_model)
    d = layer(est, "dense")
    assert est["kind"] == E.KIND_ESTIMATE
    assert d["multiplications"] == d["multipliers"] == 8 * 4
    # 8-bit data, weights 3/128 and -5/128 (two non-zero bits each): shift-and-add in LUTs.
    assert d["lut_multipliers"] == 32 and d["DSP"] == 0 == est["total"]["DSP"]
    assert d["adders"] == 4 * (8 - 1)  # zero biases add nothing
    # The same layer with the DSP rules relaxed: every product on a DSP48, fewer LUTs.
    loose = {"dsp_min_data_bits": 1, "dsp_min_weight_bits": 1, "lut_max_weight_digits": 1}
    est_dsp = E.estimate(hls_model, constants=loose)
    assert layer(est_dsp, "dense")["DSP"] == 32 and layer(est_dsp, "dense")["lut_multipliers"] == 0
    assert est_dsp["total"]["LUT"] < est["total"]["LUT"]
    # LUTs and FFs are the fitted coefficients times the hardware counts.
    assert est["total"]["LUT"] == round(E.linear(est["features"], est["coefficients"]["LUT"]))


def test_conv_multipliers_and_ii_by_hand(tmp_path):
    est = est_of(conv_model(), tmp_path)
    d = layer(est, "conv")
    assert d["multipliers"] == 3 * 3 * 2 * 4
    frame = 8 * 8 + C["frame_overhead_cycles"]   # io_stream: one input pixel per clock + per-frame overhead
    assert d["ii_cycles"] == frame and est["ii_cycles"] == frame
    assert est["latency_cycles"] >= frame
    assert est["patterns_per_s"] == pytest.approx(200e6 / frame)
    assert d["line_buffer"]["rows"] == 2 and d["line_buffer"]["width_px"] == 8
    assert est["parts"]["xcku115"]["LUT"] == pytest.approx(est["total"]["LUT"] / 663_360)


def test_pruning_halves_multipliers(tmp_path):
    full = layer(est_of(dense_model(), tmp_path / "a"), "dense")
    half = layer(est_of(dense_model(zero_half=True), tmp_path / "b"), "dense")
    assert half["multipliers"] * 2 == full["multipliers"]
    cfull = layer(est_of(conv_model(), tmp_path / "c"), "conv")
    chalf = layer(est_of(conv_model(zero_half=True), tmp_path / "d"), "conv")
    assert chalf["multipliers"] * 2 == cfull["multipliers"]
    assert chalf["LUT"] < cfull["LUT"]


def test_powers_of_two_are_shifts(tmp_path):
    m = dense_model()
    k = np.full((8, 4), 0.25)  # +-2^k: wires, no multiplier
    m.get_layer("dense").set_weights([k, np.zeros(4)])
    d = layer(est_of(m, tmp_path), "dense")
    assert d["multipliers"] == 0 and d["shift_only"] == 32 and d["adders"] == 4 * 7


def test_reuse_factor_halves_multipliers_doubles_ii(tmp_path):
    one = est_of(conv_model(), tmp_path / "a")
    two = est_of(conv_model(), tmp_path / "b", reuse_factor=2)
    c1, c2 = layer(one, "conv"), layer(two, "conv")
    assert c2["reuse_factor"] == 2
    assert c2["multipliers"] == math.ceil(c1["multipliers"] / 2)
    f = C["frame_overhead_cycles"]
    assert c2["ii_cycles"] - f == 2 * (c1["ii_cycles"] - f)
    assert two["ii_cycles"] - f == 2 * (one["ii_cycles"] - f)
    d1 = layer(est_of(dense_model(), tmp_path / "c"), "dense")
    d2 = layer(est_of(dense_model(), tmp_path / "d", reuse_factor=2), "dense")
    assert d2["multipliers"] * 2 == d1["multipliers"]


def test_io_parallel_and_resource_strategy_run(tmp_path):
    par = est_of(dense_model(), tmp_path / "a", io_type="io_parallel")
    assert par["ii_cycles"] == 1 and par["io_type"] == "io_parallel"
    res = est_of(dense_model(), tmp_path / "b", strategy="Resource", reuse_factor=4)
    assert layer(res, "dense")["multipliers"] == 8


def test_memory_and_bram_rules():
    assert F.bram18(512, 36) == 1 and F.bram18(1024, 36) == 2 and F.bram18(900, 448) == 25
    assert F.memory_cost(16, 100, C)["where"] == "SRL/LUTRAM"
    assert F.memory_cost(900, 96, C) == {"BRAM18": 6, "LUT": 0, "where": "BRAM18"}
    assert F.adder_tree_luts(1, 12, 20)[0] == 0
    assert F.adder_tree_luts(8, 12, 20) == (7, 4 * 13 + 2 * 14 + 15, 3)


def test_detectors_and_vendor_report():
    est = {"patterns_per_s": 100_000.0}
    assert E.keeps_up(est, "ncem_4d_camera") and not E.keeps_up(est, "arina")
    assert E.margin(est, "arina") == pytest.approx(100_000 / 120_000)
    syn = E.from_vendor_report({"summary": {"kind": "HLS estimate", "target_clock_ns": 5.0, "latency_cycles": 1044,
                                            "interval_cycles": 1028, "LUT": 263280, "FF": 43847, "DSP": 340,
                                            "BRAM_18K": 100}})
    assert syn["kind"].startswith("synthesis")
    assert syn["total"] == {"LUT": 263280, "FF": 43847, "DSP": 340, "BRAM18": 100}
    assert syn["patterns_per_s"] == pytest.approx(1e9 / (1028 * 5))
    assert syn["parts"]["xcu250"]["DSP"] == pytest.approx(340 / 12_288)
    assert E.pm(syn, "LUT") == ""   # synthesis numbers carry no estimator error bar


# ----------------------------------------------------------------------------- structure

def test_monotonic_in_reuse_bits_and_sparsity(tmp_path):
    big = {"dsp_min_data_bits": 1, "dsp_min_weight_bits": 1, "lut_max_weight_digits": 1}
    m = conv_model()
    r1 = E.estimate(convert(m, FirmwareSpec(), tmp_path / "a"), constants=big)
    r4 = E.estimate(convert(m, FirmwareSpec(reuse_factor=4), tmp_path / "b"), constants=big)
    assert r4["total"]["DSP"] < r1["total"]["DSP"] and r4["ii_cycles"] > r1["ii_cycles"]
    half = E.estimate(convert(conv_model(zero_half=True), FirmwareSpec(), tmp_path / "c"), constants=big)
    assert half["total"]["DSP"] < r1["total"]["DSP"] and half["total"]["LUT"] < r1["total"]["LUT"]
    # Wider data: more adder bits, more LUTs and FFs.
    import qkeras as q

    def wide(bits):
        def body(x):
            x = q.QActivation(q.quantized_bits(bits, 2, alpha=1), name="wide")(x)
            return q.QDense(4, kernel_quantizer=q.quantized_bits(8, 0, alpha=1),
                            bias_quantizer=q.quantized_bits(8, 2, alpha=1), name="dense")(x)
        model = _qmodel((8,), body)
        model.get_layer("dense").set_weights([np.where(np.arange(32).reshape(8, 4) % 2, W_A, W_B), np.zeros(4)])
        return E.estimate(convert(model, FirmwareSpec(), tmp_path / f"w{bits}"))
    narrow, broad = wide(6), wide(14)
    assert broad["features"]["lut_add"] > narrow["features"]["lut_add"]
    assert broad["total"]["LUT"] > narrow["total"]["LUT"]


def test_clock_period_changes_pipeline(tmp_path):
    fast = E.estimate(convert(dense_model(64, 16), FirmwareSpec(clock_period_ns=2.5), tmp_path / "a"))
    slow = E.estimate(convert(dense_model(64, 16), FirmwareSpec(clock_period_ns=10.0), tmp_path / "b"))
    assert fast["latency_cycles"] > slow["latency_cycles"]
    assert fast["features"]["ff_pipe"] > slow["features"]["ff_pipe"]
    assert fast["total"]["FF"] > slow["total"]["FF"]
    assert F.pipeline(C, "7series", 5.0, 3.9, 6)[0] > F.pipeline(C, "ultrascale", 5.0, 2.5, 6)[0]


def test_weight_bits_and_families():
    ones, span = F.weight_bits(type("P", (), {"width": 8, "integer": 1})(), np.array([3 / 128, 0.25, 5 / 128, 0.0]))
    assert ones.tolist() == [2, 1, 2, 0] and span.tolist() == [2, 1, 3, 0]
    assert E.family_of("xc7z020clg400-1") == "7series" and E.family_of("xcu250-figd2104-2L-e") == "ultrascale"
    assert E.part_key("xcu250-figd2104-2L-e") == "xcu250" and E.part_key("xcku115-flvb2104-2-i") == "xcku115"


def test_error_bars_printed(tmp_path):
    est = est_of(dense_model(), tmp_path)
    bars = est["error_bars"]
    assert set(bars) == set(E.QUANTITIES)
    if bars["LUT"] is not None:        # fit.json present (it is committed)
        assert f"LUT +- {100 * bars['LUT']:.0f} %" in E.summary_line(est)


# ----------------------------------------------------------------------------- calibration machinery

def test_calibration_data_file():
    from ccstae.firmware import calibration as K

    designs = K.load_designs(vendor_path=Path("/nonexistent"))
    assert len(designs) >= 5 and len({d["name"] for d in designs}) == len(designs)
    assert {E.family_of(d["part"]) for d in designs} == {"7series", "ultrascale"}
    assert {d["io_type"] for d in designs} == {"io_stream", "io_parallel"}
    assert len({d["clock_period_ns"] for d in designs}) >= 2
    for d in designs:
        assert d["source"] and set(d["published"]) >= {"LUT", "FF", "DSP", "latency_cycles", "ii_cycles"}
    fit = json.loads(K.FIT_FILE.read_text())
    assert fit["designs"] == [d["name"] for d in designs]   # fit.json is from this data file


def test_fit_and_leave_one_out_recover_linear_truth():
    from ccstae.firmware import calibration as K

    rng = np.random.default_rng(0)
    truth = {"LUT": {"lut_mult": 0.5, "lut_add": 0.8, "lut_logic": 1.0, "process": 100.0},
             "FF": {"ff_pipe": 0.7, "ff_io": 0.3, "process": 200.0}}
    designs, records = [], []
    for i in range(7):
        f = {k: float(rng.uniform(1e3, 1e5)) for k in ("lut_mult", "lut_add", "lut_logic", "ff_pipe", "ff_io")}
        f["process"] = float(rng.integers(2, 20))
        rec = {"features": f, "DSP": 10 + i, "BRAM18": 2, "latency_cycles": 100, "ii_cycles": 50}
        pub = {q: E.linear(f, truth[q]) for q in E.FITTED} | {"DSP": 10 + i, "BRAM18": 2, "latency_cycles": 100,
                                                             "ii_cycles": 50}
        designs.append({"name": f"d{i}", "source": "synthetic", "part": "xc7z020" if i % 2 else "xcu50",
                        "clock_period_ns": 5.0, "io_type": "io_stream", "strategy": "Latency", "reuse_factor": 1,
                        "precision": "x", "input_shape": [], "layers": [], "published": pub, "features": rec})
        records.append(rec)
    coef = K.fit_all(designs, records)
    for q in E.FITTED:
        for k, v in truth[q].items():
            assert coef[q][k] == pytest.approx(v, rel=1e-6)
    table = K.calibrate(designs)       # vendor-style entries: no conversion
    assert all(abs(r[q]["loo_error"]) < 1e-6 for r in table["rows"] for q in K.QUANTITIES)
    assert "median abs LOO error" in K.format_table(table)


def test_vendor_report_joins_the_calibration_set(tmp_path):
    from ccstae.firmware import calibration as K
    from ccstae.firmware import vendor

    prj = tmp_path / "tiny-q8"
    prj.mkdir()
    est = est_of(dense_model(), tmp_path)
    summary = {"estimate": {k: est[k] for k in ("kind", "part", "io_type", "clock_period_ns", "latency_cycles",
                                                "ii_cycles", "features")} | {"total": est["total"]}}
    (prj / "summary.json").write_text(json.dumps(summary))
    report = vendor.summarize_csynth({"TargetClockPeriod": "5.00", "EstimatedClockPeriod": "4.1", "WorstLatency": "9",
                                      "IntervalMax": "1", "LUT": "2500", "FF": "3000", "DSP": "0", "BRAM_18K": "0"})
    out = tmp_path / "vendor_designs.toml"
    assert vendor.record_calibration(prj, report, path=out) == "tiny-q8"
    added = K.load_designs(path=Path("/nonexistent"), vendor_path=out)
    assert [d["name"] for d in added] == ["tiny-q8"]
    assert added[0]["published"]["LUT"] == 2500 and added[0]["resources_from"] == "csynth"
    assert K.design_record(added[0])["features"] == pytest.approx(est["features"])
