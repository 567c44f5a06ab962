"""hls4ml conversion and C-simulation: the firmware must equal the QKeras encoder bit for bit.

One pruned, briefly fitted encoder is converted once per session and shared (hls4ml's compile
takes ~10-60 s); an unpruned twin is compiled too, for the "before pruning" check.
"""
import numpy as np
import pytest
from tensorflow import keras

from ccstae.firmware import convert as fw
from ccstae.firmware import csim, vendor
from ccstae.core.errors import UserError
from ccstae.model.network import build_encoder
from ccstae.quant import prune, qmodel
from builders import P, synthetic_patterns, targets

def noisy_patterns(n, seed=5):
    """Test patterns: smooth Poisson patterns, noisier ones with a background, and the edge cases."""
    rng = np.random.default_rng(seed)
    clean = synthetic_patterns(n // 2, seed=seed)
    noisy = np.sqrt(np.clip(synthetic_patterns(n - n // 2, seed=seed + 1) ** 2
                            + rng.exponential(0.5, (n - n // 2, P, P, 1)), 0, None)).astype(np.float32)
    return np.concatenate([csim.edge_case_patterns((P, P, 1)), clean, noisy])


@pytest.fixture(scope="session")
def models():
    keras.utils.set_random_seed(1)
    enc = build_encoder(P, filters=(4, 8), dense=(16,))
    # A toy regression, not the CC-ST-AE: a random output layer as Keras would draw it (the
    # project's encoder starts at zero, the identity warp): the very draw the fixture had before, which
    # these checks (e.g. the 0.1 deviation bound of the toy model) were sized on.
    out = enc.get_layer("out")
    out.kernel.assign(keras.initializers.GlorotUniform()(out.kernel.shape))
    x, y = synthetic_patterns(1024, seed=3), None
    y = targets(x)
    enc.compile(keras.optimizers.Adam(3e-3), "mse")
    enc.fit(x, y, batch_size=64, epochs=3, verbose=0)
    # This synthetic encoder (fitted to toy targets, no noise injection) has ReLU outputs of a few
    # units: give them [0, 8) instead of the project's [0, 2), or the overflow check rightly fails.
    q = qmodel.build_qencoder(enc, qmodel.QuantSpec(activation_integer=3))
    pruned, _ = prune.prune(q, 0.5, end_step=32)  # 16 batches per epoch
    pruned.compile(keras.optimizers.Adam(1e-3), "mse")
    pruned.fit(x, y, batch_size=64, epochs=3, callbacks=prune.prune_callbacks(), verbose=0)
    return {"float": enc, "q": q, "pruned": prune.strip(pruned)}


@pytest.fixture(scope="session")
def project(models, tmp_path_factory):
    """The shared project: the pruned QAT-fitted encoder, converted, compiled, with tb_data."""
    out = tmp_path_factory.mktemp("hls") / "prj"
    hls_model = fw.convert(models["pruned"], fw.FirmwareSpec(), out)
    csim.ensure_compiled(hls_model)
    x = noisy_patterns(300)
    x_tb, expected = fw.make_tb_data(out, models["pruned"], x)
    return {"dir": out, "hls": hls_model, "x": x, "x_tb": x_tb, "expected": expected}


# ---------------------------------------------------------------- spec and model checks (fast)

def test_spec_defaults_and_validation():
    spec = fw.FirmwareSpec()
    spec.validate()
    assert (spec.backend, spec.io_type, spec.strategy, spec.clock_period_ns) == ("Vitis", "io_stream", "Latency", 5.0)
    spec = fw.FirmwareSpec.from_config({"backend": "vivado", "io_type": "IO_PARALLEL", "part": "xcu250-figd2104-2L-e",
                                        "csim_patterns_per_level": 300})
    assert (spec.backend, spec.io_type) == ("Vivado", "io_parallel")
    for part in ("xcvu9p-flga2104-2L-e", "xczu9eg-ffvb1156-2-e", "xc7z020clg400-1", "xcku115-flvb2104-2-i"):
        fw.FirmwareSpec(part=part).validate()
    for bad, match in [({"backend": "Quartus"}, "Vitis, Vivado"), ({"io_type": "io_serial"}, "io_stream"),
                       ({"strategy": "fast"}, "Latency"), ({"part": "AGFB014R24B2E2V"}, "xcku115"),
                       ({"part": "ku115"}, "part"), ({"reuse_factor": 0}, "reuse_factor")]:
        with pytest.raises(UserError, match=match):
            fw.FirmwareSpec(**bad).validate()


def test_float_layers_and_pruning_wrappers_are_refused(models, tmp_path):
    with pytest.raises(UserError, match="float Conv2D"):
        fw.convert(models["float"], fw.FirmwareSpec(), tmp_path / "f")
    # One float layer left in an otherwise quantized encoder.
    q = models["q"]
    x = keras.layers.Activation("relu", name="float_relu")(q.get_layer("out_quant").output)
    with pytest.raises(UserError, match="float_relu"):
        fw.convert(keras.Model(q.input, x), fw.FirmwareSpec(), tmp_path / "g")
    wrapped, _ = prune.prune(q, 0.5)
    with pytest.raises(UserError, match="strip"):
        fw.convert(wrapped, fw.FirmwareSpec(), tmp_path / "h")
    with pytest.raises(UserError, match="part"):
        fw.convert(q, fw.FirmwareSpec(part="EP4CE22F17C6"), tmp_path / "i")
    assert not (tmp_path / "i").exists()


def test_fixed_formats():
    f = fw.FixedFormat.parse("nnet::array<ap_fixed<16,4,AP_RND_CONV,AP_SAT,0>, 4*1>")
    assert (f.signed, f.width, f.integer, f.lsb, f.min, f.max) == (True, 16, 4, 2 ** -12, -8.0, 8 - 2 ** -12)
    u = fw.FixedFormat.parse("ufixed<8,1,RND_CONV,SAT,0>")
    assert (u.min, u.max, u.lsb) == (0.0, 2 - 2 ** -7, 2 ** -7)
    np.testing.assert_array_equal(u.snap([0.5 + 2 ** -8, 1.5 * 2 ** -7, 3.0]), [0.5, 2 ** -6, 3.0])  # half to even
    assert u.snap([3.0], clip=True)[0] == u.max


def test_mismatch_report_names_pattern_output_and_values():
    a = np.zeros((3, 4))
    b = a.copy()
    b[2, 1] = 2 ** -12
    r = csim.compare_outputs(a, b)
    assert r.mismatches == [(2, 1, 0.0, 2 ** -12)] and r.exact_fraction == 11 / 12 and not r.exact
    assert "pattern 2 output 1: qkeras 0.0 firmware 0.000244140625" in r.report()


def test_saturation_check_flags_an_overflowing_range():
    out = fw.FixedFormat(True, 8, 2)  # [-2, 2)
    float_pred = np.array([[0.5, -1.0], [3.7, -2.6]])
    firmware = out.snap(float_pred, clip=True)
    r = csim.saturation_check(firmware, float_pred, out)
    assert r["overflow"] and r["stuck_fraction"] == 0.5 and r["max_abs_deviation"] == pytest.approx(3.7 - out.max)
    r = csim.saturation_check(firmware[:1], float_pred[:1], out)
    assert not r["overflow"] and r["stuck_fraction"] == 0 and not r["large_deviation"]


def test_testbench_build_errors_are_reported(tmp_path):
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "myproject.cpp").write_text("int f() { return 0; }\n")
    (tmp_path / "myproject_test.cpp").write_text("int main() { return undeclared_thing; }\n")
    with pytest.raises(csim.BuildError, match="undeclared_thing"):
        csim.build_testbench(tmp_path)


def write_fake_csynth(prj_dir, latency=1044, interval=1028):
    """The files a vendor synthesis leaves, in the documented format (hls.app solution list,
    <prj>_prj/solution1/syn/report/myproject_csynth.xml), for a machine without the tool."""
    sln = prj_dir / "myproject_prj"
    (sln / "solution1" / "syn" / "report").mkdir(parents=True, exist_ok=True)
    (sln / "hls.app").write_text('<project xmlns="com.autoesl.autopilot.project" name="myproject_prj" '
                                 'top="myproject"><solutions><solution name="solution1" status="active"/>'
                                 '</solutions></project>\n')
    (sln / "solution1" / "syn" / "report" / "myproject_csynth.xml").write_text(f"""<?xml version="1.0"?>
<profile>
  <UserAssignments><Part>xcku115-flvb2104-2-i</Part><TopModelName>myproject</TopModelName>
    <TargetClockPeriod>5.00</TargetClockPeriod></UserAssignments>
  <PerformanceEstimates>
    <SummaryOfTimingAnalysis><EstimatedClockPeriod>4.368</EstimatedClockPeriod></SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency><Best-caseLatency>{latency}</Best-caseLatency>
      <Worst-caseLatency>{latency}</Worst-caseLatency><Interval-min>{interval}</Interval-min>
      <Interval-max>{interval}</Interval-max></SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources><BRAM_18K>100</BRAM_18K><DSP>340</DSP><FF>43847</FF><LUT>263280</LUT><URAM>0</URAM></Resources>
    <AvailableResources><BRAM_18K>4320</BRAM_18K><DSP>5520</DSP><FF>1326720</FF><LUT>663360</LUT><URAM>0</URAM>
    </AvailableResources>
  </AreaEstimates>
</profile>
""")


def test_csynth_report_parsing_without_the_tool(tmp_path):
    (tmp_path / "project.tcl").write_text('set project_name "myproject"\nset backend "vitis"\n')
    write_fake_csynth(tmp_path)
    report = vendor.parse_report(tmp_path)
    s = report["summary"]
    assert s["latency_cycles"] == 1044 and s["interval_cycles"] == 1028 and s["DSP"] == 340
    assert s["LUT"] == 263280 and s["available_DSP"] == 5520 and s["estimated_clock_ns"] == 4.368
    assert s["kind"] == "HLS estimate"


# ---------------------------------------------------------------- the shared project

def test_compiled_firmware_is_bit_exact_after_pruning(models, project):
    x = project["x"]
    assert len(x) >= 200
    r = csim.compare_compiled(project["hls"], models["pruned"], x)
    assert r.n_patterns == len(x) and r.exact_fraction == 1.0, r.report()
    # The edge cases gave distinct, non-trivial outputs: saturated inputs equal the top of the range.
    fwo = csim.predict_firmware(project["hls"], x[:7])
    np.testing.assert_array_equal(fwo[2], fwo[3])  # 4.0 and 1e3 both saturate to 2 - 2^-7
    assert np.abs(fwo).max() > 0
    assert max(prune.sparsity_report(models["pruned"]).values()) > 0.45


def test_library_copies_side_by_side_give_every_bit_of_one_library(project):
    """predict_firmware runs patterns on copies of the library in threads: same bits, same order,
    and a copy's state (function statics) never leaks into another's patterns."""
    x = project["x"][:60]
    one = np.asarray(project["hls"].predict(np.ascontiguousarray(x, np.float64)), np.float64).reshape(len(x), -1)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(csim.predict_firmware(project["hls"], x, threads=threads), one)


def test_compiled_firmware_is_bit_exact_before_pruning(models, tmp_path):
    hls_model = fw.convert(models["q"], fw.FirmwareSpec(), tmp_path / "unpruned")
    r = csim.compare_compiled(hls_model, models["q"], noisy_patterns(240, seed=9))
    assert r.exact_fraction == 1.0, r.report()


def test_project_files_and_types(models, project):
    prj = project["dir"]
    for name in ("hls4ml_config.yml", "build_prj.tcl", "myproject_test.cpp", "firmware/myproject.cpp"):
        assert (prj / name).exists(), name
    inp, out = fw.io_formats(project["hls"])
    assert (inp.signed, inp.width, inp.integer) == (False, 8, 1)  # the input quantizer's ap_ufixed<8,1>
    assert (out.signed, out.width, out.integer) == (True, 16, 4)  # quantized_bits(16, 3): ap_fixed<16,4>
    assert fw.project_io_formats(prj) == (inp, out)
    assert "pattern" in fw.layer_types(project["hls"])
    # tb_data: on the input grid, with out-of-range values left for the firmware to saturate.
    rows = np.loadtxt(prj / "tb_data" / "tb_input_features.dat")
    assert rows.shape == (len(project["x"]), P * P)
    np.testing.assert_array_equal(rows * 128, np.round(rows * 128))
    assert rows.max() == 1e3


def test_testbench_is_bit_exact(project):
    r = csim.run_testbench(project["dir"], rebuild=True)
    assert r.n_patterns == len(project["x"]) and r.exact_fraction == 1.0, r.report()
    # The compiled library and the testbench agree too.
    log = np.loadtxt(project["dir"] / "tb_data" / "csim_results.log")
    out = fw.project_io_formats(project["dir"])[1]
    np.testing.assert_array_equal(out.snap(log), csim.predict_firmware(project["hls"], project["x_tb"]))


def test_no_overflow_against_the_float_encoder(models, project):
    noisiest = project["x"][-100:]
    # The float twin of the pruned encoder: same weights, no quantizers.
    r = csim.check_saturation(project["hls"], qmodel.float_twin(models["pruned"]), noisiest)
    assert not r["overflow"] and r["stuck_fraction"] == 0, r
    assert r["max_abs_deviation"] < 0.1, r
    fwo = csim.predict_firmware(project["hls"], noisiest)
    assert csim.saturation_check(fwo, fwo, project["hls"])["output_type"] == "ap_fixed<16,4>"


# ---------------------------------------------------------------- vendor tools (absent here)

def test_vendor_flow_skips_cleanly_without_the_tool(project, capsys):
    if vendor.find_vendor_tool() is not None:
        pytest.skip("a vendor tool is installed: the skip path does not apply")
    assert vendor.vendor_csim(project["dir"]) is None
    assert vendor.SKIP_REASON in capsys.readouterr().out


def test_a_required_vendor_flow_fails_without_the_tool(cli, one_line_error, tmp_path):
    """A CI job that must run the vendor C-simulation cannot pass silently (`make csim REQUIRE=1`)."""
    if vendor.find_vendor_tool() is not None:
        pytest.skip("a vendor tool is installed: the missing-tool path does not apply")
    rc, out, _ = cli("vendor", "csim", "--project", tmp_path)
    assert rc == 0 and vendor.SKIP_REASON in out
    rc, _, err = cli("vendor", "csim", "--require", "--project", tmp_path)
    one_line_error(rc, err, "vendor", "vitis_hls", "--require")


@pytest.mark.skipif(vendor.find_vendor_tool() is None, reason=vendor.SKIP_REASON)
def test_vendor_csim_and_synth(project):
    csim_report = vendor.vendor_csim(project["dir"])
    assert csim_report["returncode"] == 0 and "CSimResults" in csim_report
    synth = vendor.vendor_synth(project["dir"])
    assert synth["summary"]["latency_cycles"] > 0
