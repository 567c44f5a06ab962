"""The robustness study (ccstae/studies/robustness.py) on the tiny preset: a 2 x 2 grid end to end on a
2-worker Dask LocalCluster, the same cell in-process number for number, resume without
recomputing, a failing cell recorded while the study goes on."""
import json
import os

import numpy as np
import pytest

from ccstae.studies import robustness, robustness_eval
from ccstae.core.config import load_config
from ccstae.core.cube_writer import write_cube
from ccstae.core.data_io import open_cube
from ccstae.core.errors import UserError


def tiny_study_config(**robust):
    cfg = load_config("tiny")
    cfg["train"]["epochs"] = 2
    cfg["quant"]["epochs"] = 2
    cfg["robustness"].update({"fixed_levels": [0.0, 0.5], "modes": [], "test_levels": [0.0, 0.5], "seeds": [1],
                              "firmware_patterns": 50, **robust})
    return cfg


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("robustness") / "study"
    summary = robustness.run_study(tiny_study_config(), out, jobs=2, progress=False, reuse_runs=False)
    return out, summary


def test_a_2_worker_cluster_and_in_process_give_the_same_numbers(study, tmp_path):
    _, on_cluster = study
    # One regime of the same study, every task in this process, in a fresh folder (nothing reused).
    # Without the firmware model: its hls4ml compile is the slow part, and the numbers of a cell
    # do not depend on where its tasks ran whatever the model (the firmware's come from QKeras's).
    alone = robustness.run_study(tiny_study_config(fixed_levels=[0.5], baseline=False, models=["float", "quantized"]),
                                 tmp_path / "alone", scheduler="in-process", progress=False, reuse_runs=False)

    def numbers(rows):  # all but wall-clock times, of the models both ran
        return [{k: v for k, v in r.items() if k != "csim_seconds"} for r in rows if r["model"] != "firmware"]

    assert numbers(alone["cells"]["fixed-0.50"]["rows"]) == numbers(on_cluster["cells"]["fixed-0.50"]["rows"])


def test_a_2x2_grid_runs_end_to_end(study):
    out, summary = study
    cells = summary["cells"]
    assert [n for n in cells] == ["fixed-0.00", "fixed-0.50", "py4DSTEM"]
    assert cells["fixed-0.00"]["status"] == cells["fixed-0.50"]["status"] == "done"
    assert cells["py4DSTEM"]["status"] in ("done", "skipped")
    for name in ("fixed-0.00", "fixed-0.50"):
        rows = cells[name]["rows"]
        assert {(r["label"], r["model"]) for r in rows} == {(w, m) for w in ("w=0", "w=0.5")
                                                            for m in ("float", "quantized", "firmware")}
        for r in rows:
            assert np.isfinite(r["loss"]) and all(np.isfinite(v) for v in r["mae"].values())
            assert set(r["calibration"]["slope"]) == {"exx", "eyy", "exy", "theta"}  # beside every MAE
        for r in (r for r in rows if r["model"] == "firmware"):
            # 50 of 144 patterns C-simulated, all bit-exact: QKeras stands in for the rest, and says so.
            assert r["csim_patterns"] == 50 and r["csim_exact_fraction"] == 1.0
            assert "bit-exact on 50 C-sim patterns" in r["source"]
    for name in ("report.md", "results.json", "results.csv", "summary.csv", "study.json", "heatmap_float.png",
                 "heatmap_quantized.png", "heatmap_firmware.png", "lines_firmware.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "## Findings" in report and "Deploy `fixed-" in report
    assert summary["findings"]["deploy"] in ("fixed-0.00", "fixed-0.50")
    # A flat map's MAE beside every number: a row per table, computed from each cube's ground truth.
    flat = [r for r in summary["summary"] if r["model"] == "flat map"]
    flat_mae = {r["cube"]: r["mae_exx"] for r in flat}
    assert len(flat) == len({c["label"] for c in summary["cubes"]}) and all(r["mae_exx"] > 0 for r in flat)
    assert report.count("| **flat map** |") == 3  # float, quantized, firmware tables
    assert all("slope_exx" in r for r in summary["summary"] if r["model"] == "firmware") and ", slope " in report
    # ...and the shot-noise floor below it, from each simulated cube's noise-free twin: higher with more background.
    floor = {r["cube"]: r for r in summary["summary"] if r["model"] == "noise floor"}
    assert set(floor) == {c["label"] for c in summary["cubes"]}
    assert 0 < floor["w=0"]["mae_exx"] < floor["w=0.5"]["mae_exx"] and floor["w=0"]["bragg_counts"] > 0
    assert report.count("| **noise floor** |") == 3 and "Electrons per pattern in the Bragg disks" in report
    centroids = {r["cube"]: r for r in summary["summary"] if r["model"] == "disk centroids"}
    assert all(0.5 < centroids[k]["mae_exx"] / floor[k]["mae_exx"] < 2 for k in floor)  # small bright disks: alike
    assert report.count("| **disk centroids** |") == 3 and report.count("| **Bayes bound** |") == 3
    bayes = {r["cube"]: r for r in summary["summary"] if r["model"] == "Bayes bound"}
    assert all(0 < bayes[k]["mae_exx"] <= 1.1 * min(floor[k]["mae_exx"], flat_mae[k]) for k in floor)
    assert "## Training health" in report and "- `fixed-0.00`: " in report  # each regime's health verdict
    assert not list(out.rglob("*.tmp*"))  # every output was renamed into place


def test_a_cube_without_ground_truth_gets_a_loss_but_no_mae(study, tmp_path):
    from ccstae.model.run import load_run
    from ccstae.quant import qmodel

    out, summary = study
    cube = json.loads((out / "results.json").read_text())["cubes"][0]
    with open_cube(cube["path"]) as c:
        data = c.read_rows(0, c.shape[0])
    bare = write_cube(tmp_path / "no_truth.h5", data)
    runs_ = summary["cells"]["fixed-0.00"]["runs"]
    runs = {"float": load_run(runs_["float"]), "quantized": load_run(runs_["quantized"], qmodel.load_qencoder)}
    for k in ("float", "quantized"):
        runs[k + "_reference"] = np.load(os.path.join(runs_[k], "reference.npy"))
    rows = robustness_eval.evaluate_cube(robustness.external_cubes([bare])[0], runs, ["float", "quantized"], None, 0)
    for r in rows:
        assert r["mae"] is None and np.isfinite(r["loss"])
        assert "no ground truth" in r["note"] and "MAE refused" in r["note"]


def test_a_rerun_keeps_finished_cells_and_records_a_failing_one(study, monkeypatch):
    out, first = study
    stamps = {n: os.path.getmtime(out / "cells" / n / "result.json") for n in first["cells"]}
    calls = []

    def train_regime(cfg, train_cube, cell, reuse):
        calls.append(cell.name)
        raise RuntimeError("simulated crash in training")

    monkeypatch.setattr(robustness_eval, "train_regime", train_regime)
    # The grid grows by one regime; in-process so the patched trainer is the one called.
    summary = robustness.run_study(tiny_study_config(modes=["curriculum"]), out, scheduler="in-process",
                                   progress=False, reuse_runs=False)
    assert calls == ["curriculum"]  # the finished cells were not recomputed...
    for n, t in stamps.items():
        assert os.path.getmtime(out / "cells" / n / "result.json") == t, n  # ...nor rewritten
    failed = summary["cells"]["curriculum"]
    assert failed["status"] == "failed" and "simulated crash in training" in failed["error"]
    assert "Traceback" in failed["traceback"]
    assert json.loads((out / "cells" / "curriculum" / "result.json").read_text())["status"] == "failed"
    assert summary["cells"]["fixed-0.00"]["rows"] == first["cells"]["fixed-0.00"]["rows"]
    report = (out / "report.md").read_text()
    assert "## Failed cells" in report and "curriculum" in report


def test_bad_settings_and_a_changed_study_are_refused(study):
    out, _ = study
    cfg = tiny_study_config()
    cfg["robustness"]["test_levels"] = [1.2]
    with pytest.raises(UserError, match="test_levels"):
        robustness.settings(cfg)
    cfg = tiny_study_config()
    cfg["robustness"]["seeds"] = [1, 2]  # other test scans: the finished cells would not match
    with pytest.raises(UserError, match="other settings"):
        robustness.run_study(cfg, out, scheduler="in-process", progress=False, reuse_runs=False)


def test_other_doses_and_presets_are_extra_test_sets(tmp_path):
    cfg = tiny_study_config(test_counts=[1e3, 1e5], test_presets=["ms-tiny"])
    s = robustness.settings(cfg)
    cubes = robustness.test_sets(cfg, s, tmp_path)
    labels = [c["label"] for c in cubes]
    # The main set first, then the other dose (1e5 is tiny's own), then the multislice preset.
    assert labels == ["w=0", "w=0.5", "w=0 N=1000", "w=0.5 N=1000", "w=0 [ms-tiny]", "w=0.5 [ms-tiny]"]
    assert len({c["key"] for c in cubes}) == len({c["path"] for c in cubes}) == 6
    other = robustness.cell_key(cfg, s, s["regimes"][0], "train", cubes[:2])
    assert robustness.cell_key(cfg, s, s["regimes"][0], "train", cubes) != other  # the cubes are in the key
    with pytest.raises(UserError, match="test_presets"):
        robustness.settings(tiny_study_config(test_presets=["default"]))  # 64-pixel patterns, not 32


def test_a_cube_without_a_visible_lattice_scores_the_baseline_as_a_flat_map(tmp_path, monkeypatch):
    """baseline_maps refuses a cube with no visible lattice (very noisy cubes): the study records the
    baseline as fitting nothing, scored like its unfitted positions (the reference lattice), not a crash."""
    from ccstae.analysis import baseline
    from ccstae.physics.scans import simulate_scan

    if not baseline.available()[0]:
        pytest.skip(baseline.available()[1])

    def no_lattice(cube, **kw):
        raise UserError("cube.h5: no lattice visible")

    monkeypatch.setattr(baseline, "baseline_maps", no_lattice)
    path = simulate_scan(load_config("tiny"), tmp_path / "cube.h5", noise_w=0.5, seed=5, progress=False)
    cell = robustness_eval.run_baseline_cell(load_config("tiny"), [{"label": "tiny", "level": 0.5, "seed": 5,
                                                                    "path": path}])
    (row,) = cell["rows"]
    from ccstae.analysis.evaluate import truth_maps
    from ccstae.physics.strain import mae

    with open_cube(path) as cube:
        truth = truth_maps(cube.ground_truth)
    assert row["failed_fraction"] == 1.0 and "no lattice visible" in row["note"]
    # the same computation (flat_map_mae is mae of zeros), but numpy's float32 mean can differ in the
    # last bit with the arrays' memory alignment: equal to 1e-9
    assert row["mae"] == pytest.approx(mae({k: np.zeros_like(v) for k, v in truth.items()}, truth), rel=1e-9)
    assert row["mae"]["exx"] > 0


def test_a_worker_killed_mid_cell_costs_a_rerun_not_the_study(tmp_path):
    """SIGKILL the worker running a cell once its training has written an epoch: Dask reruns the
    lost cell on a live worker (what the cell had finished, such as its float run, is kept or
    resumed from its checkpoint), and the study finishes with every number."""
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    out = tmp_path / "study"
    first_epoch = out / "cells" / "fixed-0.00" / "float" / "history.json"
    killed = []

    def kill_the_cells_worker(client):
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            time.sleep(0.2)
            if not first_epoch.exists():
                continue
            try:
                for worker, keys in client.processing().items():
                    if any(str(k).startswith("run_cell") for k in keys):
                        os.kill(client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
                        killed.append(worker)
                        return
            except Exception:  # noqa: BLE001 - a worker coming or going between the calls: look again
                continue

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        killer = threading.Thread(target=kill_the_cells_worker, args=(client,), daemon=True)
        killer.start()
        cfg = tiny_study_config(fixed_levels=[0.0], baseline=False, models=["float", "quantized"])  # no hls4ml compile
        summary = robustness.run_study(cfg, out, scheduler=cluster.scheduler_address, progress=False,
                                       reuse_runs=False)
        killer.join(timeout=5)
    assert killed, "the cell finished before its worker could be killed"
    cell = summary["cells"]["fixed-0.00"]
    assert cell["status"] == "done" and all(np.isfinite(r["mae"]["exx"]) for r in cell["rows"])
    history = json.loads((out / "cells" / "fixed-0.00" / "float" / "history.json").read_text())
    n_epochs = cfg["train"]["epochs"] + cfg["train"]["distill_epochs"]  # cycle, then distillation
    assert [h["epoch"] for h in history] == list(range(1, n_epochs + 1))  # every epoch once: not cut short, not logged twice
