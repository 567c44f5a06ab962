"""Resource/latency estimator: hand-counted cases on one-layer models, and the SVHN calibration.

Weights are set by hand to values that are neither zero nor a power of two (3/128, -5/128 on the
8-bit grid), so every weight costs exactly one multiplier; no hls4ml compile() anywhere.
"""
import math

import numpy as np
import pytest
from tensorflow import keras

from firmware import estimate as E
from firmware.convert import FirmwareSpec, convert

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
    # Operand widths as the bit-exact pass left them: 8-bit input, the weights' own range.
    wa = list(hls_model.get_layers())[0].get_output_variable().type.precision.width
    wb = hls_model.graph["dense"].weights["weight"].type.precision.width
    assert wa == 8 and wb < 8
    # Narrow products: below the DSP thresholds -> LUT multipliers.
    assert d["lut_multipliers"] == 32 and d["DSP"] == 0 == est["total"]["DSP"]
    assert d["adders"] == 4 * (8 - 1)  # zero biases add nothing
    # The same layer with the DSP thresholds lowered: every product on a DSP48.
    est_dsp = E.estimate(hls_model, constants={"dsp_min_data_bits": 1, "dsp_min_weight_bits": 1})
    assert layer(est_dsp, "dense")["DSP"] == 32 and layer(est_dsp, "dense")["lut_multipliers"] == 0
    # The LUTs of the multipliers: 32 x lut_per_mult_bit x wa x wb.
    lut_mults = d["LUT"] - layer(est_dsp, "dense")["LUT"]
    assert lut_mults == round(32 * C["lut_per_mult_bit"] * wa * wb)


def test_conv_multipliers_and_ii_by_hand(tmp_path):
    est = est_of(conv_model(), tmp_path)
    d = layer(est, "conv")
    assert d["multipliers"] == 3 * 3 * 2 * 4
    assert d["ii_cycles"] == 8 * 8  # io_stream: one input pixel per clock
    assert est["ii_cycles"] == 64
    assert est["latency_cycles"] >= 64
    assert est["patterns_per_s"] == pytest.approx(200e6 / 64)
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
    assert c2["ii_cycles"] == 2 * c1["ii_cycles"]
    assert two["ii_cycles"] == 2 * one["ii_cycles"]
    d1 = layer(est_of(dense_model(), tmp_path / "c"), "dense")
    d2 = layer(est_of(dense_model(), tmp_path / "d", reuse_factor=2), "dense")
    assert d2["multipliers"] * 2 == d1["multipliers"]


def test_io_parallel_and_resource_strategy_run(tmp_path):
    par = est_of(dense_model(), tmp_path / "a", io_type="io_parallel")
    assert par["ii_cycles"] == 1 and par["io_type"] == "io_parallel"
    res = est_of(dense_model(), tmp_path / "b", strategy="Resource", reuse_factor=4)
    assert layer(res, "dense")["multipliers"] == 8


def test_memory_and_bram_rules():
    assert E.bram18(512, 36) == 1 and E.bram18(1024, 36) == 2 and E.bram18(900, 448) == 25
    assert E.memory_cost(16, 100, C)["where"] == "SRL/LUTRAM"
    assert E.memory_cost(900, 96, C) == {"BRAM18": 6, "LUT": 0, "where": "BRAM18"}
    assert E.adder_tree_luts(1, 12, 20)[0] == 0
    assert E.adder_tree_luts(8, 12, 20) == (7, 4 * 13 + 2 * 14 + 15, 3)


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


def test_svhn_calibration_errors_are_finite():
    cal = E.calibration_table()
    errors = {r["quantity"]: r for r in cal["rows"]}
    assert set(errors) == {"LUT", "FF", "DSP", "BRAM18", "latency_cycles", "ii_cycles"}
    for r in cal["rows"]:
        assert np.isfinite(r["error_vs_hls"])
        if r["vivado"] is not None:
            assert np.isfinite(r["error_vs_vivado"])
    # The tuned constants keep the synthesis-level numbers within 30 %, the cycles within 5 %.
    for q in ("LUT", "FF", "DSP", "BRAM18"):
        assert abs(errors[q]["error_vs_vivado"]) < 0.3, errors[q]
    assert abs(errors["ii_cycles"]["error_vs_hls"]) < 0.05
    assert abs(errors["latency_cycles"]["error_vs_hls"]) < 0.05
    assert "| LUT |" in E.format_calibration(cal)
