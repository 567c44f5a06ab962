"""`ccstae train`, `strain`, `evaluate`, `quantize`: the happy path on the tiny preset, and one
clear line (exit code 2, nothing overwritten) for every bad input."""
import json

import h5py
import numpy as np
import pytest

from ccstae import cli as ccstae_cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A trained tiny run (no --input: the CLI simulates the training sample) and a noisy test cube."""
    root = tmp_path_factory.mktemp("cli_model")
    assert ccstae_cli.main(["train", "--config", "tiny", "--out", str(root / "run"), "--no-progress"]) == 0
    assert ccstae_cli.main(["simulate", "--preset", "tiny", "--noise", "0.5", "--seed", "7", "--no-progress",
                            "--out", str(root / "test.h5")]) == 0
    return root


def test_train_writes_a_finished_run_from_a_simulated_sample(tiny):
    run_dir = tiny / "run"
    assert (run_dir / "train_data.h5").exists() and (run_dir / "DONE").exists()
    assert json.loads((run_dir / "config.json").read_text())["name"] == "tiny"


def test_strain_writes_maps_and_png_and_refuses_to_overwrite(tiny, cli, one_line_error):
    out = tiny / "strain.h5"
    rc, text, err = cli("strain", "--model", tiny / "run", "--input", tiny / "test.h5", "--out", out,
                        "--region", "0:6,0:6", "--no-progress")
    assert rc == 0, err
    with h5py.File(out) as f:
        assert f["exx"].shape == (12, 12) and f.attrs["reference_region"] == "0:6,0:6"
        # Referenced to the mean matrix of the region: the region's mean strain is ~0.
        assert abs(float(np.mean(f["exx"][0:6, 0:6]))) < 2e-3
        # The input's dose, measured from the data: the training dose, so no warning.
        assert f.attrs["input_counts"] == pytest.approx(1e5, rel=0.05)
        # An error bar per pattern beside each map (the tiny preset distils, so the run is calibrated).
        for k in ("exx", "eyy", "exy", "theta"):
            std = f[f"{k}_std"][()]
            assert std.shape == (12, 12) and np.all(np.isfinite(std)) and np.all(std > 0), k
    assert "WARNING" not in err and "error bars: written as *_std" in text
    assert out.with_suffix(".png").exists()
    before = out.read_bytes()
    rc, _, err = cli("strain", "--model", tiny / "run", "--input", tiny / "test.h5", "--out", out)
    one_line_error(rc, err, "strain", str(out), "--overwrite")
    assert out.read_bytes() == before


def test_evaluate_reports_mae_against_ground_truth(tiny, cli):
    rc, text, err = cli("evaluate", "--model", tiny / "run", "--input", tiny / "test.h5",
                        "--out", tiny / "eval", "--no-progress")
    assert rc == 0, err
    result = json.loads((tiny / "eval" / "test.json").read_text())
    assert set(result["mae"]) == {"exx", "eyy", "exy", "theta"}
    assert all(np.isfinite(v) and v >= 0 for v in result["mae"].values())
    assert (tiny / "eval" / "test.png").exists()
    # Beside the MAE: a flat map's, and the shot-noise floor of the simulated cube's noise-free twin.
    assert result["flat_map_mae"]["exx"] > 0 and 0 < result["noise_floor"]["exx"] < result["flat_map_mae"]["exx"]
    assert "a flat map (no skill)" in text and "shot-noise floor" in text
    # The error bars checked against the truth: RMS of error / std per map.
    assert set(result["error_bar_calibration"]) == {"exx", "eyy", "exy", "theta"}
    assert all(np.isfinite(v) and v > 0 for v in result["error_bar_calibration"].values())


def test_refine_aligns_each_pattern_on_the_host(tiny, cli, tmp_path):
    """--refine: the encoder's outputs refined by Gauss-Newton against the learned reference."""
    rc, _, err = cli("strain", "--model", tiny / "run", "--input", tiny / "test.h5", "--out", tmp_path / "r.h5",
                     "--refine", "--no-progress")
    assert rc == 0, err
    rc, _, err = cli("strain", "--model", tiny / "run", "--input", tiny / "test.h5", "--out", tmp_path / "p.h5",
                     "--no-progress")
    assert rc == 0, err
    with h5py.File(tmp_path / "r.h5") as r, h5py.File(tmp_path / "p.h5") as p:
        assert bool(r.attrs["refined"]) and not bool(p.attrs["refined"])
        assert np.all(np.isfinite(r["exx"][()])) and not np.allclose(r["exx"][()], p["exx"][()])
        assert "exx_std" not in r  # no error model for refined maps


def test_a_run_without_a_finished_checkpoint_is_refused(tiny, tmp_path, cli, one_line_error):
    (tmp_path / "half").mkdir()
    rc, _, err = cli("strain", "--model", tmp_path / "half", "--input", tiny / "test.h5",
                     "--out", tmp_path / "s.h5")
    one_line_error(rc, err, "strain", "not a finished run")
    assert not (tmp_path / "s.h5").exists()


def test_a_cube_of_another_pattern_size_is_refused(tiny, tmp_path, cli, one_line_error):
    cube = tmp_path / "big.npy"
    np.save(cube, np.ones((2, 3, 40, 40), np.float32))
    rc, _, err = cli("strain", "--model", tiny / "run", "--input", cube, "--out", tmp_path / "s.h5")
    one_line_error(rc, err, "strain", "40x40", "32x32")


def test_evaluate_needs_ground_truth(tiny, tmp_path, cli, one_line_error):
    cube = tmp_path / "nogt.npy"
    np.save(cube, np.ones((2, 3, 32, 32), np.float32))
    rc, _, err = cli("evaluate", "--model", tiny / "run", "--input", cube)
    one_line_error(rc, err, "evaluate", "no ground truth")


def test_bad_configs_are_one_line_errors(tmp_path, cli, one_line_error):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochz = 3\n")
    rc, _, err = cli("train", "--config", bad, "--out", tmp_path / "r")
    one_line_error(rc, err, "train", "unknown key 'epochz'")
    impossible = tmp_path / "impossible.toml"
    impossible.write_text("[train]\nnoise_levels = [1.2]\n")
    # The bad key is reported before anything runs, even before the missing input is noticed.
    rc, _, err = cli("train", "--config", impossible, "--input", tmp_path / "missing.h5", "--out", tmp_path / "r")
    one_line_error(rc, err, "train", "train.noise_levels", "1.2")
    assert not (tmp_path / "r").exists()
    rc, _, err = cli("train", "--config", "nosuchpreset", "--out", tmp_path / "r")
    one_line_error(rc, err, "train", "unknown preset")


@pytest.fixture(scope="module")
def tiny_q(tiny):
    out = tiny / "q6-s50"
    assert ccstae_cli.main(["quantize", "--model", str(tiny / "run"), "--bits", "6", "--sparsity", "0.5",
                            "--out", str(out), "--no-progress"]) == 0
    return out


def test_quantize_prunes_to_the_target_and_refuses_an_existing_run(tiny, tiny_q, cli, one_line_error):
    report = json.loads((tiny_q / "quant.json").read_text())
    assert report["spec"]["weight_bits"] == 6
    assert all(abs(v - 0.5) < 0.02 for v in report["sparsity"].values()), report["sparsity"]
    rc, _, err = cli("quantize", "--model", tiny / "run", "--out", tiny_q)
    one_line_error(rc, err, "quantize", "already there")


def test_convert_a_users_cube_is_bit_exact_on_both_paths(tiny, tiny_q, cli, one_line_error):
    prj = tiny / "prj"
    rc, text, err = cli("convert", "--model", tiny_q, "--out", prj, "--input", tiny / "test.h5")
    assert rc == 0, err
    s = json.loads((prj / "summary.json").read_text())
    assert s["csim"]["exact_fraction"] == 1.0 and s["csim"]["testbench_exact_fraction"] == 1.0
    assert s["variant"]["bits"] == 6 and set(s["accuracy"]["firmware"]) == {"input"}
    rc, _, err = cli("convert", "--model", tiny / "run", "--out", tiny / "prj2")
    one_line_error(rc, err, "convert", "not a quantized run")


def test_strain_warns_when_the_input_dose_is_far_from_the_training_dose(tiny, cli, tmp_path):
    # A model trained at 1e5 e/pattern gave maps worse than a flat map's at 1e3 (README, issue 11).
    cube = tmp_path / "low.h5"
    assert ccstae_cli.main(["simulate", "--preset", "tiny", "--noise", "0.5", "--counts", "1000", "--seed", "7",
                            "--no-progress", "--out", str(cube)]) == 0
    rc, _, err = cli("strain", "--model", tiny / "run", "--input", cube, "--out", tmp_path / "s.h5", "--no-progress")
    assert rc == 0 and "WARNING" in err and "electrons per pattern" in err and "trained at 100,000" in err
    with h5py.File(tmp_path / "s.h5") as f:
        assert f.attrs["input_counts"] == pytest.approx(1e3, rel=0.05)
