"""End to end on the tiny preset: simulate -> train -> QAT + pruning -> hls4ml -> both C-simulations.

One pipeline run per session, shared by every test here (the compile is the slow part).
"""
import json
import os

import pytest

from ccstae.core.config import load_config
from ccstae.core.errors import UserError
from ccstae.pipeline.hls import format_summary, run_pipeline


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    return root, run_pipeline("tiny", root=root, progress=False)


def test_both_c_simulations_are_bit_exact(tiny_pipeline):
    root, s = tiny_pipeline
    c = s["csim"]
    # Every test pattern of every noise level, plus the edge cases, through hls4ml's compiled C++...
    assert c["patterns"] == 4 * 12 * 12 + 7
    assert c["exact_fraction"] == 1.0, c["mismatches"]
    # ...and the generated testbench, built with g++, on tb_data ([firmware] csim_patterns_per_level per level).
    per_level = min(load_config("tiny")["firmware"]["csim_patterns_per_level"], 12 * 12)
    assert c["testbench_patterns"] >= 4 * per_level
    assert c["testbench_exact_fraction"] == 1.0, c["testbench_mismatches"]
    assert not s["saturation"]["overflow"]
    assert not list(root.rglob("*.tmp*"))  # every writer renamed its output into place


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
    # Beside every MAE, what no skill scores and the shot-noise floor (rising with the background).
    flat, floor = s["skill_lines"]["flat map"], s["skill_lines"]["noise floor"]
    assert set(flat) == set(floor) == set(s["skill_lines"]["centroids"]) == {"w=0", "w=0.25", "w=0.5", "w=0.7"}
    bayes = s["skill_lines"]["Bayes bound"]
    assert all(0 < bayes[w]["exx"] <= 1.1 * min(floor[w]["exx"], flat[w]["exx"]) for w in flat)
    assert 0 < floor["w=0"]["exx"] < floor["w=0.7"]["exx"] and all(m["exx"] > 0 for m in flat.values())
    text = format_summary(s)
    assert "   flat map " in text and "noise floor" in text and "e in the Bragg disks" in text


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
    assert {name: s["ran"] for name, s in again["stages"].items()} == {
        "data": False, "float": False, "qat": False, "firmware": False, "centroid": False}
    assert {name: s["key"] for name, s in again["stages"].items()} == {
        name: s["key"] for name, s in first["stages"].items()}
    assert "firmware (reused)" in again["times_s"]  # nothing changed: not converted again


def test_a_stage_is_current_only_for_what_it_was_made_from(tiny_pipeline, tmp_path):
    import shutil

    from ccstae.pipeline import stages
    from ccstae.core.config import load_config

    root, first = tiny_pipeline
    cfg = load_config("tiny")
    float_dir, q_dir = root / "runs" / "tiny" / "float", root / "runs" / "tiny" / "q8-s50"
    float_run = stages.StageResult("float", float_dir, first["stages"]["float"]["key"], ran=False)
    q_key = stages.key_of(stages.qat_description(cfg, float_run))
    assert q_key == first["stages"]["qat"]["key"] and stages.current(q_dir, q_key, "DONE")
    # Other [quant] settings: another key.
    other = dict(cfg, quant=dict(cfg["quant"], weight_bits=6))
    assert stages.key_of(stages.qat_description(other, float_run)) != q_key
    # A retrained float run (here: a copy whose encoder file differs) is not current, and the
    # QAT run of the old one is not current for it: a new float model never meets an old QAT.
    copy = tmp_path / "float"
    shutil.copytree(float_dir, copy)
    with open(copy / "encoder.h5", "ab") as f:
        f.write(b"\0")
    assert not stages.current(copy, float_run.key, "DONE")
    assert stages.key_of(stages.qat_description(cfg, stages.StageResult("float", copy, float_run.key, False))) != q_key
    # A run made before stages were keyed (no stage.json) is never silently reused.
    legacy = tmp_path / "legacy"
    shutil.copytree(float_dir, legacy)
    (legacy / "stage.json").unlink()
    assert not stages.current(legacy, float_run.key, "DONE")


def test_stage_keys_follow_package_versions_and_source_files(monkeypatch):
    from ccstae.pipeline import stages
    from ccstae.core.config import load_config

    cfg = load_config("tiny")
    train = stages.StageResult("data", "train.h5", "k", ran=False)
    key = stages.key_of(stages.float_description(cfg, train))
    assert stages.key_of(stages.float_description(cfg, train)) == key  # deterministic
    assert stages.key_of(stages.float_description(dict(cfg, noise=dict(cfg["noise"], test_levels=[0.1])),
                                                  train)) == key  # the test scans are not the float run's input
    real = stages.package_version
    monkeypatch.setattr(stages, "package_version", lambda p: "9.9" if p == "tensorflow" else real(p))
    assert stages.key_of(stages.float_description(cfg, train)) != key
    monkeypatch.setattr(stages, "package_version", real)
    assert "ccstae/model/run.py" not in stages.float_description(cfg, train)["sources"]
    monkeypatch.setitem(stages.CODE, "float", stages.CODE["float"] + ("ccstae.model.run",))
    assert stages.key_of(stages.float_description(cfg, train)) != key
    assert "ccstae/model/run.py" in stages.float_description(cfg, train)["sources"]


def test_an_overflow_fails_make_hls_unless_allowed(tiny_pipeline, monkeypatch, capsys):
    import copy

    from ccstae import cli as ccstae_cli
    from ccstae.pipeline import hls as pipeline

    _, s = tiny_pipeline
    assert pipeline.problems(s) == []
    bad = copy.deepcopy(s)
    bad["saturation"].update(overflow=True, large_deviation=True, max_abs_deviation=3.0)
    monkeypatch.setattr(pipeline, "run_pipeline", lambda config, progress=True, core="both": bad)
    assert ccstae_cli.main(["hls", "--config", "tiny", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "output overflow" in err and "large deviation" in err
    assert ccstae_cli.main(["hls", "--config", "tiny", "--no-progress", "--allow-overflow"]) == 0
    bad["csim"]["exact_fraction"] = 0.99  # not bit-exact: never allowed
    assert ccstae_cli.main(["hls", "--config", "tiny", "--no-progress", "--allow-overflow"]) == 1
    # Nor is a centroid core that is not bit-exact, whichever C-simulation it is.
    for key in ("exact_fraction", "testbench_exact_fraction"):
        core_bad = copy.deepcopy(s)
        core_bad["centroid"]["csim"][key] = 0.999
        assert any("centroid core" in p for p in pipeline.problems(core_bad))
        monkeypatch.setattr(pipeline, "run_pipeline", lambda config, progress=True, core="both": core_bad)
        assert ccstae_cli.main(["hls", "--config", "tiny", "--no-progress", "--allow-overflow"]) == 1


def test_the_centroid_core_runs_beside_the_encoder_bit_exact(tiny_pipeline):
    from ccstae.firmware import centroid_stage

    root, s = tiny_pipeline
    c, tiny = s["centroid"], load_config("tiny")
    levels = {"w=0", "w=0.25", "w=0.5", "w=0.7"}
    # Every test pattern through the ctypes library, [firmware] centroid_testbench_patterns_per_level
    # of each level through the g++ testbench, and the saturated frames through both: all bit-exact.
    n_saturated = c["csim"]["per_check"]["saturated frames"]["patterns"]
    per_level = min(tiny["firmware"]["centroid_testbench_patterns_per_level"], 12 * 12)
    assert c["csim"]["patterns"] == 4 * 12 * 12 + n_saturated and n_saturated >= 5
    assert c["csim"]["testbench_patterns"] == 4 * per_level + n_saturated
    assert c["csim"]["exact_fraction"] == c["csim"]["testbench_exact_fraction"] == 1.0, c["csim"]["mismatches"]
    assert c["same_stream"]  # the core read the very counts the encoder's front end hands on
    # Its strain MAE per level beside the encoder's, better than a flat map where the noise is low.
    assert set(c["accuracy"]) == set(c["calibration"]) == levels
    assert c["accuracy"]["w=0"]["exx"] < s["skill_lines"]["flat map"]["w=0"]["exx"]
    # Its estimate beside the encoder's: a small fraction of its LUTs, a verdict per camera.
    est = c["estimate"]
    assert est["kind"].startswith("estimate") and est["total"]["LUT"] < s["estimate"]["total"]["LUT"]
    assert est["patterns_per_s"] > 0 and all("keeps_up_binned" in r for r in est["detectors"])
    assert [r["key"] for r in est["detectors"]] == tiny["sweep"]["detectors"]
    text = format_summary(s)
    assert all(f"{w:>5} {centroid_stage.LABEL}" in text for w in levels)
    assert "centroid core resources" in text and "Dectris ARINA" in text
    on_disk = json.loads((root / "hls_projects" / "tiny-q8-s50-rf1-stream" / "summary.json").read_text())
    assert on_disk["centroid"]["accuracy"] == c["accuracy"]


def test_core_centroid_alone_trains_nothing(tiny_pipeline, monkeypatch, capsys):
    from ccstae import cli as ccstae_cli
    from ccstae.pipeline import core_stage, stages

    root, both = tiny_pipeline
    monkeypatch.chdir(root)
    monkeypatch.setattr(stages, "ensure_float", lambda *a, **k: pytest.fail("--core centroid trained"))
    assert ccstae_cli.main(["hls", "--config", "tiny", "--core", "centroid", "--no-progress"]) == 0
    s = json.loads((root / "hls_projects" / "tiny-centroid" / "summary.json").read_text())
    assert set(s["stages"]) == {"data", "centroid"} and not s["stages"]["centroid"]["ran"]  # the core made by both
    assert s["centroid"]["accuracy"] == both["centroid"]["accuracy"]
    assert set(s["skill_lines"]["noise floor"]) == set(both["skill_lines"]["noise floor"])
    assert "centroid core only" in capsys.readouterr().out
    with pytest.raises(UserError, match="--core 'fpga'") as e:
        core_stage.check_choice("fpga")
    assert "\n" not in str(e.value)
