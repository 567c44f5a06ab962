"""Cube files: what the writer writes the readers return, errors are one clear line, reads are lazy."""
import tracemalloc

import h5py
import numpy as np
import pytest

from ccstae.core import cube_writer, data_io
from ccstae.core.errors import DataError, UserError


def make_cube(shape=(5, 7, 16, 16), seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def one_line(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_our_hdf5_roundtrip(tmp_path):
    data = make_cube()
    gt = {"exx": np.ones((5, 7), np.float32), "grain": np.arange(35, dtype=np.int32).reshape(5, 7)}
    path = cube_writer.write_cube(tmp_path / "c.h5", data, ground_truth=gt, attrs={"noise_w": 0.25, "scan": [5, 7]})
    with h5py.File(path) as f:
        assert f["datacube"].chunks == (1, 7, 16, 16) and f["datacube"].compression == "gzip"
        assert f.attrs["ccstae_version"] and f.attrs["created_by"]
    with data_io.open_cube(path) as cube:
        assert cube.shape == (5, 7, 16, 16) and cube.dtype == np.float32 and len(cube) == 35
        assert cube.pattern_size == 16 and cube.notes == []
        assert cube.attrs["noise_w"] == 0.25 and cube.attrs["scan"] == [5, 7]
        assert np.array_equal(cube.ground_truth["grain"], gt["grain"])
        assert np.array_equal(cube.read_rows(1, 3), data[1:3])
        batches = list(cube.iter_batches(4))  # 4 does not divide Ry = 7
        assert [s for s, _ in batches] == list(range(0, 35, 4))
        assert np.array_equal(np.concatenate([b for _, b in batches]), data.reshape(35, 16, 16))
        x, idx = cube.sample(10, np.random.default_rng(1), return_index=True)
        assert np.all(np.diff(idx) > 0) and np.array_equal(x, data.reshape(35, 16, 16)[idx])
        assert cube.sample(100, np.random.default_rng(1)).shape == (35, 16, 16)


def test_large_patterns_get_smaller_chunks(tmp_path):
    with cube_writer.CubeWriter(tmp_path / "big.h5", (1, 300, 64, 64)):
        pass
    with h5py.File(tmp_path / "big.h5") as f:
        assert f["datacube"].chunks == (1, 256, 64, 64)  # 4 MB


def test_emd_like_file(tmp_path):
    data = make_cube()
    path = tmp_path / "emd.h5"
    with h5py.File(path, "w") as f:
        f.attrs["emd_group_type"] = "file"
        g = f.create_group("scan_root").create_group("datacube")
        g.attrs["emd_group_type"] = "array"
        g.create_dataset("data", data=data)
        for i in range(4):
            g.create_dataset(f"dim{i}", data=np.arange(data.shape[i]))
        f.create_dataset("scan_root/other4d", data=np.zeros((2, 2, 2, 2)))
    with data_io.open_cube(path) as cube:
        assert cube.dataset_name == "/scan_root/datacube/data"
        assert cube.attrs["emd_group_type"] == "file" and cube.ground_truth is None
        assert np.array_equal(cube.read_rows(0, 5), data)


def test_generic_hdf5_named_and_unique(tmp_path):
    data = (make_cube() * 1000).astype(np.uint16)
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("meta/calib", data=np.zeros(3))
        f.create_dataset("exp/frames", data=data)
    with data_io.open_cube(path, "/exp/frames") as cube:
        x = cube.read_rows(0, 5)
        assert x.dtype == np.float32 and np.array_equal(x, data.astype(np.float32))
    with data_io.open_cube(path) as cube:  # the only 4D dataset
        assert cube.dataset_name == "/exp/frames"
    with pytest.raises(DataError) as e:
        data_io.open_cube(path, "/exp/nothing")
    one_line(e, "g.h5", "/exp/nothing", "/exp/frames")
    with h5py.File(path, "a") as f:
        f.create_dataset("exp/frames2", data=data)
    with pytest.raises(DataError) as e:
        data_io.open_cube(path)
    one_line(e, "g.h5", "several 4D")


def test_npy(tmp_path):
    data = make_cube()
    np.save(tmp_path / "c.npy", data)
    with data_io.open_cube(tmp_path / "c.npy") as cube:
        assert cube.shape == data.shape and cube.attrs == {} and cube.ground_truth is None
        assert np.array_equal(cube.read_rows(2, 4), data[2:4])
        assert np.array_equal(np.concatenate([b for _, b in cube.iter_batches(8)]), data.reshape(-1, 16, 16))
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(DataError) as e:
        data_io.open_cube(tmp_path / "flat.npy")
    one_line(e, "flat.npy", "4D")


def test_non_square_patterns_readable_with_a_note(tmp_path):
    data = make_cube((2, 3, 8, 10))
    path = cube_writer.write_cube(tmp_path / "r.h5", data)
    with data_io.open_cube(path) as cube:
        assert cube.pattern_size == (8, 10) and "not square" in cube.notes[0]
        assert np.array_equal(cube.read_rows(0, 2), data)


def test_missing_corrupt_not_4d(tmp_path):
    with pytest.raises(DataError) as e:
        data_io.open_cube(tmp_path / "none.h5")
    one_line(e, "none.h5", "no such file")
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DataError) as e:
        data_io.open_cube(tmp_path / "junk.h5")
    one_line(e, "junk.h5", "HDF5")
    # a real HDF5 file cut short
    good = cube_writer.write_cube(tmp_path / "good.h5", make_cube((8, 8, 16, 16)))
    (tmp_path / "cut.h5").write_bytes(good.read_bytes()[:3000])
    with pytest.raises(DataError) as e:
        with data_io.open_cube(tmp_path / "cut.h5") as cube:
            cube.read_rows(0, 8)
    one_line(e, "cut.h5")
    with h5py.File(tmp_path / "three.h5", "w") as f:
        f.create_dataset("datacube", data=np.zeros((3, 4, 5)))
    with pytest.raises(DataError) as e:
        data_io.open_cube(tmp_path / "three.h5")
    one_line(e, "three.h5", "expected 4D")


def test_nans_are_found_per_batch(tmp_path):
    data = make_cube()
    data[3, 2, 5, 5] = np.nan
    path = cube_writer.write_cube(tmp_path / "nan.h5", data)
    with data_io.open_cube(path) as cube:
        it = cube.iter_batches(7)
        assert len(next(it)[1]) == 7  # clean batches pass
        with pytest.raises(DataError) as e:
            list(it)
        one_line(e, "nan.h5", "NaN", str(3 * 7 + 2))
        with pytest.raises(DataError):
            cube.check_finite()
    with pytest.raises(DataError):
        data_io.check_finite(path)
    data_io.check_finite(cube_writer.write_cube(tmp_path / "ok.h5", make_cube()))


def test_existing_output_refused_and_failed_write_leaves_it(tmp_path):
    path = tmp_path / "c.h5"
    cube_writer.write_cube(path, make_cube(seed=1))
    before = path.read_bytes()
    with pytest.raises(UserError) as e:
        cube_writer.write_cube(path, make_cube(seed=2))
    one_line(e, "c.h5", "exists")
    with pytest.raises(RuntimeError):
        with cube_writer.CubeWriter(path, (5, 7, 16, 16), overwrite=True) as w:
            w.write_rows(0, make_cube((1, 7, 16, 16)))
            raise RuntimeError("killed midway")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]
    cube_writer.write_cube(path, make_cube(seed=2), overwrite=True)
    with data_io.open_cube(path) as cube:
        assert np.array_equal(cube.read_rows(0, 5), make_cube(seed=2))


@pytest.mark.parametrize("suffix", [".h5", ".npy"])
def test_lazy_reading_keeps_memory_bounded(tmp_path, suffix):
    shape = (64, 48, 48, 48)  # 28 MB of float32
    path = tmp_path / f"big{suffix}"
    if suffix == ".npy":
        np.save(path, np.ones(shape, np.float32))
    else:
        with cube_writer.CubeWriter(path, shape) as w:
            for r in range(shape[0]):
                w.write_rows(r, np.ones((1,) + shape[1:], np.float32))
    cube_bytes = np.prod(shape) * 4
    budget = 6 * 2**20  # a few batches' worth, a fifth of the cube
    with data_io.open_cube(path) as cube:
        tracemalloc.start()
        total = 0.0
        for _, batch in cube.iter_batches(64):
            total += float(batch.sum())
        rows = cube.read_rows(10, 11)
        x = cube.sample(100, np.random.default_rng(0))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert total == 64 * 48**3 and rows.shape == (1, 48, 48, 48) and x.shape == (100, 48, 48)
    assert peak < budget < cube_bytes, f"peak {peak / 2**20:.1f} MB while reading a {cube_bytes / 2**20:.0f} MB cube"


def test_resumable_writer_carries_on_and_refuses_other_settings(tmp_path):
    out = tmp_path / "c.h5"
    rows = np.arange(3 * 2 * 4 * 4, dtype=np.float32).reshape(3, 2, 4, 4)
    with pytest.raises(RuntimeError):
        with cube_writer.CubeWriter(out, rows.shape, attrs={"seed": 1}, resume=True) as w:
            w.write_rows(0, rows[:1])
            raise RuntimeError("interrupted")
    assert not out.exists() and (tmp_path / "c.h5.partial").exists()
    with pytest.raises(UserError, match="other settings"):
        with cube_writer.CubeWriter(out, rows.shape, attrs={"seed": 2}, resume=True):
            pass
    with cube_writer.CubeWriter(out, rows.shape, attrs={"seed": 1}, resume=True) as w:
        assert w.rows_done == 1
        w.write_rows(1, rows[1:])
    with data_io.open_cube(out) as cube:
        np.testing.assert_array_equal(cube.read_rows(0, 3), rows)
    # --overwrite starts again from a partial file made with other settings
    (tmp_path / "c.h5.partial").write_bytes((tmp_path / "c.h5").read_bytes())
    with cube_writer.CubeWriter(out, rows.shape, attrs={"seed": 3}, resume=True, overwrite=True) as w:
        assert w.rows_done == 0
        w.write_rows(0, rows)
