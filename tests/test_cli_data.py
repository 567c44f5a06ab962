"""`ccstae simulate` and `ccstae inspect`: the happy path, and one clear line for every bad input."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ccstae import cli as ccstae_cli
from ccstae.core import cube_writer, data_io
from ccstae.physics import scans

ROOT = Path(__file__).resolve().parent.parent






@pytest.fixture(scope="module")
def tiny_cube(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tiny.h5"
    assert ccstae_cli.main(["simulate", "--preset", "tiny", "--noise", "0.3", "--seed", "2",
                            "--no-progress", "--out", str(path)]) == 0
    return path


def test_help_is_fast_and_imports_no_tensorflow():
    code = "import sys; from ccstae import cli; cli.build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert ccstae_cli.main(["--help"]) == 0


def test_simulate_then_inspect(tiny_cube, tmp_path, cli):
    with data_io.open_cube(tiny_cube) as cube:
        assert cube.shape == (12, 12, 32, 32) and cube.attrs["noise_w"] == 0.3 and cube.attrs["seed"] == 2
    rc, out, err = cli("inspect", tiny_cube, "--no-progress")
    assert rc == 0, err
    assert "(12, 12, 32, 32)" in out and "ground truth: exx" in out and "noise_w = 0.3" in out
    png = Path(f"{tiny_cube}.inspect.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    assert matplotlib.image.imread(png).ndim == 3
    # a named PNG, and a file without ground truth (npy)
    np.save(tmp_path / "c.npy", np.random.default_rng(0).random((4, 5, 16, 16), dtype=np.float32))
    rc, out, err = cli("inspect", tmp_path / "c.npy", "--png", tmp_path / "o.png", "--no-progress")
    assert rc == 0 and "ground truth: none" in out and (tmp_path / "o.png").exists()


def test_clean_cube_for_training(tmp_path, cli):
    rc, out, err = cli("simulate", "--preset", "tiny", "--clean", "--no-progress", "--out", tmp_path / "c.h5")
    assert rc == 0, err
    with data_io.open_cube(tmp_path / "c.h5") as cube:
        assert cube.attrs["clean"] and np.allclose(cube.read_rows(0, 12).sum(axis=(2, 3)), 1, atol=1e-5)


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"\x00garbage" * 50)
    with h5py.File(tmp_path / "three.h5", "w") as f:
        f.create_dataset("datacube", data=np.zeros((2, 3, 4)))
    data = np.ones((2, 3, 8, 8), np.float32)
    data[1, 1, 0, 0] = np.nan
    cube_writer.write_cube(tmp_path / "nan.h5", data)
    return tmp_path


@pytest.mark.parametrize("argv, cmd, words", [
    (["simulate", "--preset", "nope", "--out", "{d}/o.h5"], "simulate", ["unknown preset 'nope'"]),
    (["simulate", "--preset", "tiny", "--noise", "1.0", "--out", "{d}/o.h5"], "simulate", ["[0, 1)"]),
    (["simulate", "--preset", "tiny", "--noise", "-0.1", "--out", "{d}/o.h5"], "simulate", ["[0, 1)"]),
    (["simulate", "--preset", "tiny", "--counts", "0", "--out", "{d}/o.h5"], "simulate", ["counts"]),
    (["simulate", "--preset", "tiny", "--counts", "many", "--out", "{d}/o.h5"], "simulate", ["--counts"]),
    (["simulate", "--config", "{d}/missing.toml", "--out", "{d}/o.h5"], "simulate", ["missing.toml"]),
    (["inspect", "{d}/missing.h5"], "inspect", ["missing.h5", "no such file"]),
    (["inspect", "{d}/junk.h5"], "inspect", ["junk.h5", "HDF5"]),
    (["inspect", "{d}/three.h5"], "inspect", ["three.h5", "4D"]),
    (["inspect", "{d}/nan.h5", "--no-progress"], "inspect", ["nan.h5", "NaN"]),
    (["inspect", "{d}/three.h5", "--dataset", "/nope"], "inspect", ["three.h5", "/nope"]),
])
def test_bad_inputs_give_one_line_and_code_2(bad_files, argv, cmd, words, cli, one_line_error):
    rc, out, err = cli(*[a.format(d=bad_files) for a in argv])
    one_line_error(rc, err, cmd, *words)
    assert not (bad_files / "o.h5").exists()


def test_existing_output_is_refused_and_never_damaged(tiny_cube, tmp_path, monkeypatch, cli,
                                                      one_line_error):
    out = tmp_path / "keep.h5"
    out.write_bytes(tiny_cube.read_bytes())
    before = out.read_bytes()
    rc, _, err = cli("simulate", "--preset", "tiny", "--no-progress", "--out", out)
    one_line_error(rc, err, "simulate", "keep.h5", "--overwrite")
    # a refused run with --overwrite (bad noise level) and a run that fails midway
    rc, _, err = cli("simulate", "--preset", "tiny", "--noise", "2", "--overwrite", "--out", out)
    one_line_error(rc, err, "simulate", "[0, 1)")

    def broken(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(scans, "render_patterns", broken)
    with pytest.raises(RuntimeError):
        ccstae_cli.main(["simulate", "--preset", "tiny", "--overwrite", "--no-progress", "--out", str(out)])
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.h5"]


def test_real_process_exit_code_and_stderr(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ccstae.cli", "simulate", "--preset", "tiny", 
                           "--noise", "1.5", "--out", str(tmp_path / "o.h5")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("ccstae simulate: error: ")
