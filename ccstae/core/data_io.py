"""4D-STEM cubes on disk: our HDF5 layout (written atomically) and lazy readers.

Our layout (written by cube_writer's `CubeWriter` / `write_cube`, e.g. from `ccstae simulate`):

    /datacube                   float32 (Rx, Ry, Qx, Qy), chunked by scan row, gzip
    /ground_truth/{exx,eyy,exy,theta,grain}   (Rx, Ry) maps, theta in radians (optional), in
                                the user frame: exx along Qx (axis 2) and Rx (axis 0), theta in
                                py4DSTEM's sense (docs/frame.md)
    file attributes             config (JSON), flat simulate.* / noise.* keys, noise_w,
                                counts, clean, seed, ccstae_version, created_by, strain_frame

`open_cube(path, dataset=None)` also reads py4DSTEM / EMD 1.0 files
(`/<name>_root/datacube/data`), any HDF5 file with a 4D dataset (named or unique) and
`.npy` files (memory-mapped). A Cube never loads the whole data: it reads scan rows,
batches or sorted random samples on demand, so cubes larger than memory work.

Writing our layout is ccstae/core/cube_writer.py; atomic output files are ccstae/core/outputs.py;
a cube's summary and overview (`ccstae inspect`) ccstae/core/overview.py.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ccstae.core.errors import DataError

CACHE_BYTES = 64 * 2**20  # HDF5 chunk cache per open file, so sorted random reads hit it
GT_MAPS = ("exx", "eyy", "exy", "theta", "grain")
# Writers of ground truth that stored it in the pattern frame (exx along pattern columns) before
# the frame was settled (docs/frame.md); their cubes have no strain_frame attribute.
PATTERN_FRAME_WRITERS = ("ccstae simulate", "ccstae train (simulated training sample)")


def user_frame_ground_truth(gt: dict | None, attrs: dict) -> dict | None:
    """Ground truth as a cube stores it -> the user frame (ccstae/physics/strain.py). A cube our
    simulator wrote before the frame was settled (created_by one of PATTERN_FRAME_WRITERS, no
    strain_frame attribute) holds the pattern frame: its exx and eyy are swapped back, so old
    cubes keep scoring right. Anything else is read as it is."""
    if gt is None or "strain_frame" in attrs or _plain(attrs.get("created_by")) not in PATTERN_FRAME_WRITERS:
        return gt
    out = dict(gt)
    if "exx" in gt and "eyy" in gt:
        out["exx"], out["eyy"] = gt["eyy"], gt["exx"]
    return out


# ---------------------------------------------------------------------------------------
# Reading


def _plain(v):
    """HDF5 attribute -> plain Python (bytes to str, numpy scalars to numbers)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()] if v.dtype.kind in "OS" else v.tolist()
    return v


class Cube:
    """A lazily read 4D-STEM cube (Rx, Ry, Qx, Qy). Use `open_cube`, ideally as `with`."""

    def __init__(self, path: Path, data, file=None, attrs=None, ground_truth=None, dataset_name=None,
                 format: str = "", detector: str = "not recorded in the file"):
        self.path = Path(path)
        # h5py.Dataset, np.memmap, a dask array or a view of them (ccstae/core/readers.py):
        # indexing reads only what is asked for
        self._data = data
        self._file = file
        self.dataset_name = dataset_name
        self.format, self.detector = format, detector
        self.attrs = attrs or {}
        self.ground_truth = ground_truth
        self.shape = tuple(int(v) for v in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.notes = []
        if self.shape[2] != self.shape[3]:
            self.notes.append(f"patterns are not square ({self.shape[2]}x{self.shape[3]})")

    @property
    def pattern_size(self):
        """Qx for square patterns, else the tuple (Qx, Qy)."""
        qx, qy = self.shape[2:]
        return qx if qx == qy else (qx, qy)

    def __len__(self) -> int:
        return self.shape[0] * self.shape[1]

    def __repr__(self):
        return f"Cube('{self.path}', shape={self.shape}, dtype={self.dtype})"

    def _read(self, index) -> np.ndarray:
        try:
            return np.asarray(self._data[index], np.float32)
        except (OSError, ValueError, RuntimeError) as e:  # a damaged chunk surfaces only when read
            raise DataError(f"{self.path}: cannot read the data, the file is corrupt ({e})") from None

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Scan rows r0..r1-1 -> (r1 - r0, Ry, Qx, Qy) float32."""
        if not 0 <= r0 <= r1 <= self.shape[0]:
            raise IndexError(f"rows {r0}:{r1} outside a scan of {self.shape[0]} rows")
        return self._read(np.s_[r0:r1])

    def iter_batches(self, batch_size: int = 256, check: bool = True):
        """Yield (flat_index_start, (n, Qx, Qy) float32) in scan order, reading rows lazily.

        check: raise DataError on NaN / inf values, naming the patterns.
        """
        rx, ry, qx, qy = self.shape
        rows_per_read = max(1, -(-batch_size // ry))
        pending, start = np.empty((0, qx, qy), np.float32), 0
        for r0 in range(0, rx, rows_per_read):
            block = self.read_rows(r0, min(rx, r0 + rows_per_read)).reshape(-1, qx, qy)
            pending = np.concatenate([pending, block]) if len(pending) else block
            while len(pending) >= batch_size or (r0 + rows_per_read >= rx and len(pending)):
                batch, pending = pending[:batch_size], pending[batch_size:]
                if check:
                    _check_batch(self.path, batch, start)
                yield start, batch
                start += len(batch)

    def read_patterns(self, index) -> np.ndarray:
        """Patterns at sorted, distinct flat indices -> (n, Qx, Qy) float32, one read per scan row."""
        index = np.asarray(index, np.int64)
        if len(index) and (np.any(np.diff(index) <= 0) or index[0] < 0 or index[-1] >= len(self)):
            raise IndexError("flat indices must be sorted, distinct and inside the scan")
        ry = self.shape[1]
        out = np.empty((len(index),) + self.shape[2:], np.float32)
        rows = index // ry
        bounds = np.flatnonzero(np.diff(rows)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(index)]):
            if hi == lo:
                continue
            cols = index[lo:hi] % ry  # h5py takes a sorted list along one axis
            out[lo:hi] = self._read((int(rows[lo]), cols.tolist() if hi - lo > 1 else int(cols[0])))
        return out

    def sample(self, n: int, rng: np.random.Generator, return_index: bool = False):
        """n distinct random patterns (n, Qx, Qy) float32, in sorted flat-index order.

        Sorted reads keep the HDF5 chunk cache hot; shuffle afterwards if order matters.
        """
        n = min(int(n), len(self))
        index = np.sort(rng.choice(len(self), size=n, replace=False))
        out = self.read_patterns(index)
        return (out, index) if return_index else out

    def check_finite(self, batch_size: int = 1024) -> None:
        """Raise DataError if any pattern holds NaN or inf (streams the whole cube)."""
        for _ in self.iter_batches(batch_size, check=True):
            pass

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_batch(path, batch, start):
    if not np.all(np.isfinite(batch)):
        bad = np.flatnonzero(~np.isfinite(batch).all(axis=(1, 2)))
        raise DataError(f"{path}: NaN or infinite values in {len(bad)} pattern(s), first at flat index "
                        f"{start + bad[0]}")


def check_finite(cube_or_path, dataset: str | None = None) -> None:
    """Raise DataError if the cube holds NaN or inf anywhere."""
    if isinstance(cube_or_path, Cube):
        cube_or_path.check_finite()
        return
    with open_cube(cube_or_path, dataset) as cube:
        cube.check_finite()


def _datasets_4d(f: h5py.File) -> list[str]:
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim == 4:
            found.append("/" + name)

    f.visititems(visit)
    return found


def _find_dataset(f: h5py.File, path: Path) -> str:
    """Our /datacube, else a py4DSTEM/EMD */datacube/data, else the unique 4D dataset."""
    if "datacube" in f and isinstance(f["datacube"], h5py.Dataset):
        return "/datacube"
    four_d = _datasets_4d(f)
    emd = [name for name in four_d if name.endswith("/datacube/data")]
    for candidates in (emd, four_d):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise DataError(f"{path}: several 4D datasets ({', '.join(candidates)}); name one with --dataset")
    raise DataError(f"{path}: no 4D dataset found (no /datacube, no */datacube/data); name one with --dataset")


def open_cube(path, dataset: str | None = None, scan: tuple[int, int] | None = None) -> Cube:
    """Open a cube lazily: our HDF5, py4DSTEM/EMD 1.0, any HDF5 (dataset='/a/b'), .npy, or a
    camera's own file (ccstae/core/readers.py: .mib, .blo, .dm4, EMPAD .xml/.raw, ARINA and fpd HDF5).

    scan: (Rx, Ry) for files that do not record the scan shape (.mib without .hdr, ARINA); a file
    that records another one is refused."""
    from ccstae.core import readers

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    if path.suffix.lower() == ".npy":
        return _check_scan(_open_npy(path), scan)
    if path.suffix.lower() in readers.SUFFIXES:
        data, info = readers.open_camera_file(path, readers.SUFFIXES[path.suffix.lower()], scan)
        return Cube(path, data, attrs=info["attrs"], dataset_name=info["dataset"], format=info["format"],
                    detector=info["detector"])
    try:
        if not h5py.is_hdf5(path):
            raise DataError(f"{path}: not an HDF5 file (or corrupt); readable formats: HDF5 (.h5, .emd), .npy, "
                            f"{', '.join(sorted(readers.SUFFIXES))}")
        f = h5py.File(path, "r", rdcc_nbytes=CACHE_BYTES)
    except OSError as e:
        raise DataError(f"{path}: cannot open as HDF5, the file is corrupt ({e})") from None
    camera = readers.hdf5_format(f) if dataset is None else None
    if camera is not None:
        data, info = readers.open_camera_file(path, camera, scan, h5file=f)
        return Cube(path, data, file=f, attrs=info["attrs"], dataset_name=info["dataset"], format=info["format"],
                    detector=info["detector"])
    try:
        return _check_scan(_open_hdf5(path, f, dataset), scan)
    except DataError:
        f.close()
        raise
    except (OSError, KeyError, ValueError) as e:
        f.close()
        raise DataError(f"{path}: cannot read the file, it is corrupt ({e})") from None


def _open_hdf5(path: Path, f: h5py.File, dataset: str | None) -> Cube:
    name = dataset if dataset is not None else _find_dataset(f, path)
    if name not in f:
        four_d = _datasets_4d(f)
        hint = f" (4D datasets in the file: {', '.join(four_d)})" if four_d else " (the file has no 4D dataset)"
        raise DataError(f"{path}: no dataset '{name}'{hint}")
    data = f[name]
    if not isinstance(data, h5py.Dataset):
        raise DataError(f"{path}: '{name}' is a group, not a dataset")
    if data.ndim != 4:
        raise DataError(f"{path}: dataset '{name}' has shape {data.shape}, expected 4D (Rx, Ry, Qx, Qy)")
    if data.dtype.kind not in "iuf":
        raise DataError(f"{path}: dataset '{name}' holds {data.dtype}, not numbers")
    attrs = {k: _plain(v) for k, v in f.attrs.items()}
    gt = None
    if name == "/datacube" and "ground_truth" in f:
        gt = {k: f["ground_truth"][k][()] for k in f["ground_truth"] if isinstance(f["ground_truth"][k], h5py.Dataset)}
        gt = user_frame_ground_truth(gt, attrs)
    if name == "/datacube":
        fmt = "ccstae HDF5"
    elif name.endswith("/datacube/data") and _plain(f.attrs.get("emd_group_type")) == "file":
        fmt = "py4DSTEM / EMD 1.0"
    else:
        fmt = "HDF5"
    return Cube(path, data, file=f, attrs=attrs, ground_truth=gt, dataset_name=name, format=fmt,
                detector=_detector_of(attrs))


def _detector_of(attrs: dict) -> str:
    """What recorded the patterns, as far as the attributes of our own files say."""
    created = str(_plain(attrs.get("created_by", "")))
    if created.startswith("ccstae simulate") or created.startswith("ccstae train"):
        return f"none: simulated ({attrs.get('engine', 'kinematic')} engine)"
    return str(attrs.get("detector", "not recorded in the file"))


def _check_scan(cube: Cube, scan) -> Cube:
    if scan is not None and tuple(cube.shape[:2]) != tuple(scan):
        cube.close()
        raise DataError(f"{cube.path}: the file holds a {cube.shape[0]}x{cube.shape[1]} scan, not --scan "
                        f"{scan[0]},{scan[1]}")
    return cube


def _open_npy(path: Path) -> Cube:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy file ({e})") from None
    if data.ndim != 4:
        raise DataError(f"{path}: array has shape {data.shape}, expected 4D (Rx, Ry, Qx, Qy)")
    if data.dtype.kind not in "iuf":
        raise DataError(f"{path}: array holds {data.dtype}, not numbers")
    return Cube(path, data, dataset_name=None, format="NumPy .npy")
