"""Writing 4D-STEM cubes in our HDF5 layout (ccstae/core/data_io.py describes it), atomically, or
resumably for slow engines.

Split from data_io.py, which reads cubes (ours and everyone else's): writing is only ever our
layout, and only the simulators, the training sample and the tests write.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ccstae.core.errors import UserError
from ccstae.core.outputs import atomic_path, check_output

CHUNK_BYTES = 4 * 2**20  # target HDF5 chunk size: one scan row, or part of one if bigger


def _attr_value(v):
    """Python / numpy values that HDF5 attributes can store (None and dicts as JSON)."""
    if isinstance(v, (dict, type(None))):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return json.dumps(v) if any(isinstance(x, (str, dict, list)) for x in v) else np.asarray(v)
    return v


class CubeWriter:
    """Stream a cube into our HDF5 layout, atomically. Use as a context manager:

        with CubeWriter(path, (Rx, Ry, Q, Q), attrs={...}) as w:
            for r in range(Rx):
                w.write_rows(r, rows)           # (n, Ry, Q, Q)
            w.write_ground_truth(maps)        # optional

    Resumable (resume=True, for slow engines): rows go to PATH.partial, which records how many
    rows are done after each write and survives a failure or an interruption; a new writer with
    the same shape and attributes carries on from `rows_done`, and success renames it to PATH.
    """

    def __init__(self, path, shape, attrs: dict | None = None, overwrite: bool = False, resume: bool = False):
        from ccstae import __version__

        self.path, self.shape = Path(path), tuple(int(v) for v in shape)
        if len(self.shape) != 4:
            raise ValueError(f"a cube is 4D (Rx, Ry, Qx, Qy), got shape {shape}")
        # created_by keeps the name from before the split: it is in every cube written since.
        self.attrs = {"ccstae_version": __version__, "created_by": "ccstae.core.data_io.CubeWriter"}
        self.attrs.update(attrs or {})
        self.overwrite, self.resume, self.rows_done = overwrite, resume, 0
        self._ctx = None

    def __enter__(self):
        if self.resume:
            return self._enter_resumable()
        self._ctx = atomic_path(self.path, self.overwrite)
        tmp = self._ctx.__enter__()
        try:
            self.file = h5py.File(tmp, "w")
            self._create(self.file)
        except BaseException as e:
            self._abort(e)
            raise
        return self

    def _create(self, file):
        rx, ry, qx, qy = self.shape
        ry_chunk = max(1, min(ry, CHUNK_BYTES // (qx * qy * 4)))
        self.data = file.create_dataset("datacube", shape=self.shape, dtype="float32",
                                        chunks=(1, ry_chunk, qx, qy), compression="gzip",
                                        compression_opts=1, shuffle=True)
        for k, v in self.attrs.items():
            file.attrs[k] = _attr_value(v)

    def _enter_resumable(self):
        check_output(self.path, self.overwrite)
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.partial.exists():
            try:
                self.file = h5py.File(self.partial, "a")
                self.data = self.file["datacube"]
                same = self.data.shape == self.shape and all(
                    k in ("ccstae_version", "rows_done") or
                    np.array_equal(np.asarray(self.file.attrs.get(k)), np.asarray(_attr_value(v)))
                    for k, v in self.attrs.items())
                self.rows_done = int(self.file.attrs.get("rows_done", 0))
            except (OSError, KeyError):
                same = False
            if not same:
                if getattr(self, "file", None):
                    self.file.close()
                if not self.overwrite:
                    raise UserError(f"{self.partial}: an interrupted run with other settings; delete it "
                                    "(or use --overwrite) to start again")
                self.partial.unlink()
        if not self.partial.exists():
            self.file = h5py.File(self.partial, "w")
            self._create(self.file)
            self.file.attrs["rows_done"] = self.rows_done = 0
        return self

    def write_rows(self, r0: int, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float32)
        self.data[r0:r0 + len(rows)] = rows
        if self.resume:
            self.rows_done = r0 + len(rows)
            self.file.attrs["rows_done"] = self.rows_done
            self.file.flush()

    def write_ground_truth(self, maps: dict) -> None:
        group = self.file.require_group("ground_truth")
        for k, v in maps.items():
            if k in group:  # a resumed run that failed after writing them
                del group[k]
            group.create_dataset(k, data=np.asarray(v))
        if "theta" in group:
            group["theta"].attrs["units"] = "radians"

    def _abort(self, exc):
        if getattr(self, "file", None) is not None:
            self.file.close()
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)

    def __exit__(self, exc_type, exc, tb):
        self.file.close()
        if self.resume:  # keep the partial file on failure: the next run carries on from it
            if exc_type is None:
                os.replace(self.partial, self.path)
            return False
        return self._ctx.__exit__(exc_type, exc, tb)


def write_cube(path, data: np.ndarray, ground_truth: dict | None = None, attrs: dict | None = None,
               overwrite: bool = False) -> Path:
    """Write an in-memory (Rx, Ry, Qx, Qy) array (and maps) in our layout, atomically."""
    data = np.asarray(data)
    with CubeWriter(path, data.shape, attrs=attrs, overwrite=overwrite) as w:
        for r in range(data.shape[0]):
            w.write_rows(r, data[r:r + 1])
        if ground_truth is not None:
            w.write_ground_truth(ground_truth)
    return Path(path)
