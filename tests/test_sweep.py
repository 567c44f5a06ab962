"""`ccstae sweep` on the tiny preset: two variants end to end, resume, a failing variant.

One sweep per session (module fixture): the float run and the single QAT run it makes are
shared by every test here; later sweeps only convert and compile.
"""
import csv
import json
import math
import os

import pytest

from ccstae.studies import sweep, sweep_eval
from ccstae.core.config import ConfigError, load_config
from ccstae.core.errors import UserError


def tiny_sweep_config(**grid):
    """tiny, with two variants sharing one QAT run: reuse factor 1 and 4."""
    cfg = load_config("tiny")
    cfg["quant"]["epochs"] = 4  # enough to be a QAT run; the accuracy is not under test here
    cfg["sweep"].update(mode="one_at_a_time", bits=[8], sparsity=[0.5], reuse_factor=[1, 4], strategy=["Latency"],
                        io_type=["io_stream"], input_binning=[1], eval_scan=[0, 0], testbench=False)
    cfg["sweep"].update(grid)
    return cfg


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    out = root / "reports" / "sweep-tiny"
    # On a 2-worker Dask LocalCluster: the float run, then the QAT run, then both variants at once.
    return root, out, sweep.run_sweep(tiny_sweep_config(), out, root=root, progress=False, jobs=2)


def test_two_variants_end_to_end(tiny_sweep):
    root, out, res = tiny_sweep
    assert (res["done"], res["failed"], res["skipped"]) == (2, 0, 0)
    names = [r["name"] for r in res["variants"]]
    assert names == ["b1-q8-s50-rf1-lat-stream", "b1-q8-s50-rf4-lat-stream"]
    for r in res["variants"]:
        # Every pattern of the 12x12 test scans at the 4 noise levels (+ 7 edge cases), bit-exact.
        assert r["csim"]["patterns"] == 4 * 12 * 12 + 7
        assert r["exact_fraction"] == 1.0, r["csim"]["mismatches"]
        assert set(r["mae"]) == set(r["float_mae"]) == {"0", "0.25", "0.5", "0.7"}
        assert r["mae"] == r["quantized_mae"]  # firmware maps from C-sim outputs equal QKeras'
        assert r["estimate"]["kind"].startswith("estimate")
        assert r["quant_run"] == res["variants"][0]["quant_run"]  # one QAT run for both
    rf1, rf4 = (r["estimate"] for r in res["variants"])
    assert rf4["ii_cycles"] > rf1["ii_cycles"] and rf4["total"]["LUT"] < rf1["total"]["LUT"]
    # The report: markdown with the sweep's own sections, CSV, HTML, Pareto plots.
    md = (out / "report.md").read_text()
    for heading in ("## Resources and throughput", "## Recommendation per detector", "## Goal check",
                    "## How these numbers were made (sweep)"):
        assert heading in md
    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["name"] for row in rows] == names
    assert all(math.isfinite(float(row[k])) for row in rows for k in row if k.startswith("slope_exx_w"))  # beside every MAE
    assert "slope exx/eyy w=" in md
    assert "<table>" in (out / "report.html").read_text()
    for png in ("pareto_lut.png", "pareto_dsp.png", "pareto_latency.png"):
        assert (out / png).stat().st_size > 1000
    assert json.loads((out / "variants" / f"{names[0]}.json").read_text())["status"] == "done"


def test_rerun_skips_finished_variants(tiny_sweep, monkeypatch):
    root, out, _ = tiny_sweep
    stamps = {p.name: os.path.getmtime(p) for p in (out / "variants").glob("*.json")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished variant was recomputed")

    monkeypatch.setattr(sweep_eval, "run_variant", must_not_run)
    res = sweep.run_sweep(tiny_sweep_config(), out, root=root, progress=False, scheduler="in-process")
    assert (res["done"], res["failed"], res["skipped"]) == (2, 0, 2)
    assert {p.name: os.path.getmtime(p) for p in (out / "variants").glob("*.json")} == stamps
    # --report-only: the report from what is finished, nothing computed.
    res = sweep.run_sweep(tiny_sweep_config(reuse_factor=[1, 4, 8]), out, root=root, progress=False, compute=False,
                          scheduler="in-process")
    assert (res["done"], res["failed"]) == (2, 0) and (out / "report.md").exists()


def test_a_failing_variant_is_recorded_and_the_sweep_goes_on(tiny_sweep, monkeypatch):
    root, _, _ = tiny_sweep
    out = root / "reports" / "sweep-fail"
    real = sweep_eval.build_firmware

    def fail_at_reuse_2(qencoder, spec, prj):
        if spec.reuse_factor == 2:
            raise RuntimeError("synthetic conversion failure")
        return real(qencoder, spec, prj)

    monkeypatch.setattr(sweep_eval, "build_firmware", fail_at_reuse_2)
    # product mode, reuse 2 first: the failure comes before a variant that must still run.
    res = sweep.run_sweep(tiny_sweep_config(mode="product", reuse_factor=[2, 1]), out, root=root, progress=False,
                          scheduler="in-process")
    assert [(r["name"], r["status"]) for r in res["variants"]] == [
        ("b1-q8-s50-rf2-lat-stream", "failed"), ("b1-q8-s50-rf1-lat-stream", "done")]
    failed = json.loads((out / "variants" / "b1-q8-s50-rf2-lat-stream.json").read_text())
    assert failed["status"] == "failed" and "synthetic conversion failure" in failed["error"]
    md = (out / "report.md").read_text()
    assert "## Failed variants" in md and "synthetic conversion failure" in md
    assert json.loads((out / "sweep.json").read_text())["failed"] == 1


def test_grid_one_at_a_time_and_product():
    cfg = tiny_sweep_config(bits=[4, 8], reuse_factor=[1, 2])
    assert [sweep.variant_name(v) for v in sweep.grid(cfg)] == [
        "b1-q8-s50-rf1-lat-stream", "b1-q4-s50-rf1-lat-stream", "b1-q8-s50-rf2-lat-stream"]
    cfg["sweep"]["mode"] = "product"
    assert len(sweep.grid(cfg)) == 4


@pytest.mark.parametrize("key, value", [("bits", [1]), ("sparsity", [1.0]), ("reuse_factor", [0]),
                                        ("strategy", ["Fastest"]), ("input_binning", [3]), ("mode", "random"),
                                        ("bits", [])])
def test_bad_grids_are_rejected_before_any_work(key, value):
    cfg = tiny_sweep_config(**{key: value})
    with pytest.raises(UserError):
        sweep.grid(cfg)


def test_presets_load_and_unknown_sweep_keys_are_errors(tmp_path):
    assert len(sweep.grid(load_config("report"))) == 3
    assert len(sweep.grid(load_config("sweep"))) > 10
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep]\nbitz = [4]\n")
    with pytest.raises(ConfigError):
        load_config(bad)
