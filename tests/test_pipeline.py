"""End to end on the tiny preset: simulate -> train -> QAT + pruning -> hls4ml -> both C-simulations.

One pipeline run per session, shared by every test here (the compile is the slow part).
"""
import json
import os

import pytest

from firmware.pipeline import run_pipeline


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    return root, run_pipeline("tiny", root=root, progress=False)


def test_both_c_simulations_are_bit_exact(tiny_pipeline):
    _, s = tiny_pipeline
    c = s["csim"]
    # Every test pattern of every noise level, plus the edge cases, through hls4ml's compiled C++...
    assert c["patterns"] == 4 * 12 * 12 + 7
    assert c["exact_fraction"] == 1.0, c["mismatches"]
    # ...and the generated testbench, built with g++, on tb_data.
    assert c["testbench_patterns"] >= 4 * 12 * 12
    assert c["testbench_exact_fraction"] == 1.0, c["testbench_mismatches"]
    assert not s["saturation"]["overflow"]


def test_the_front_end_from_raw_counts_is_bit_exact_both_ways(tiny_pipeline):
    root, s = tiny_pipeline
    c, f = s["csim"], s["frontend"]
    # Raw integer counts of every test pattern (12 x 12 per level, fewer than the 1,000 asked for)
    # plus the edge cases through ccstae_top (front end + encoder), against the integer
    # preprocessing + QKeras: the ctypes library and the g++ testbench.
    n_edges = len(f["edge_cases"])
    assert n_edges >= 5
    assert c["frontend_patterns"] == 4 * 12 * 12 + n_edges
    assert c["frontend_exact_fraction"] == 1.0, f["mismatches"]
    assert c["frontend_testbench_patterns"] == c["frontend_patterns"]
    assert c["frontend_testbench_exact_fraction"] == 1.0, f["testbench_mismatches"]
    prj = root / "hls_projects" / "tiny-q8-s50-rf1-stream"
    for name in ("firmware/ccstae_frontend.cpp", "firmware/frontend_params.h", "ccstae_frontend_test.cpp",
                 "build_frontend.tcl", "tb_data/tb_frontend_counts.dat", "tb_data/tb_frontend_predictions.dat"):
        assert (prj / name).exists(), name
    # QAT trained on the integer path, and says so in its preprocess.json.
    pre = json.loads((root / "runs" / "tiny" / "q8-s50" / "preprocess.json").read_text())
    assert pre["input_path"] == "counts" and pre["counts_per_unit"] == 1e5


def test_summary_names_the_variant_and_the_accuracy_of_all_three_models(tiny_pipeline):
    root, s = tiny_pipeline
    on_disk = json.loads((root / "hls_projects" / "tiny-q8-s50-rf1-stream" / "summary.json").read_text())
    assert on_disk["csim"]["exact_fraction"] == s["csim"]["exact_fraction"]
    v = s["variant"]
    assert (v["bits"], v["sparsity"], v["reuse_factor"], v["io_type"]) == (8, 0.5, 1, "io_stream")
    assert all(abs(f - 0.5) < 0.02 for f in v["achieved_sparsity"].values()), v["achieved_sparsity"]
    for label in ("float", "quantized", "firmware"):
        assert set(s["accuracy"][label]) == {"w=0", "w=0.25", "w=0.5", "w=0.7"}
    # The firmware is bit-exact with the quantized model, so its strain maps are the same.
    assert s["accuracy"]["firmware"] == s["accuracy"]["quantized"]


def test_the_project_holds_what_vitis_csim_needs(tiny_pipeline):
    root, _ = tiny_pipeline
    prj = root / "hls_projects" / "tiny-q8-s50-rf1-stream"
    for name in ("hls4ml_config.yml", "build_prj.tcl", "myproject_test.cpp", "firmware/myproject.cpp",
                 "tb_data/tb_input_features.dat", "tb_data/tb_output_predictions.dat", "strain_maps.png"):
        assert (prj / name).exists(), name


def test_a_second_run_reuses_every_finished_stage(tiny_pipeline):
    root, first = tiny_pipeline
    stamp = os.path.getmtime(root / "runs" / "tiny" / "float" / "encoder.h5")
    again = run_pipeline("tiny", root=root, progress=False)
    assert os.path.getmtime(root / "runs" / "tiny" / "float" / "encoder.h5") == stamp
    assert again["accuracy"] == first["accuracy"]
    assert again["times_s"]["train float CC-ST-AE"] < 5
    assert "firmware (reused)" in again["times_s"]  # nothing changed: not converted again


def test_a_quantized_run_is_current_only_for_the_float_encoder_it_came_from(tiny_pipeline, tmp_path):
    import shutil

    from model.config import load_config
    from quant import qat

    root, _ = tiny_pipeline
    cfg = load_config("tiny")
    float_dir, q_dir = root / "runs" / "tiny" / "float", root / "runs" / "tiny" / "q8-s50"
    assert qat.is_current(q_dir, float_dir, cfg)
    # A retrained float run (here: a copy whose encoder file differs) makes the QAT run stale,
    # so `make hls` never pairs a new float model with a quantized model of an old one.
    other = tmp_path / "float"
    shutil.copytree(float_dir, other)
    with open(other / "encoder.h5", "ab") as f:
        f.write(b"\0")
    assert not qat.is_current(q_dir, other, cfg)
    # Other [quant] settings make it stale as well.
    cfg["quant"]["weight_bits"] = 6
    assert not qat.is_current(q_dir, float_dir, cfg)
