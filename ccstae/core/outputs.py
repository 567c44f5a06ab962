"""Output files written safely: a temp file renamed into place (readers never see a half-written
file, a failure leaves the old one), JSON and figures through it, and a lock for files that
workers of a study share."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ccstae.core.errors import UserError


def check_output(path, overwrite: bool = False) -> Path:
    """Refuse an existing output unless overwrite; create the output folder if needed."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: output is a directory")
    if path.exists() and not overwrite:
        raise UserError(f"{path}: output file exists (use --overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot create the output folder ({e.strerror})") from None
    return path


def atomic_write(path, data) -> Path:
    """Write text or bytes to `path` through a temp file and a rename (replaces an existing file)."""
    with atomic_path(path, overwrite=True) as tmp:
        (tmp.write_bytes if isinstance(data, bytes) else tmp.write_text)(data)
    return Path(path)


def _json_default(v):
    """numpy scalars and arrays, and paths, as JSON values (results carry all three)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def write_json(path, obj, **kw) -> Path:
    """JSON through atomic_write (indented; numpy values and paths allowed)."""
    return atomic_write(path, json.dumps(obj, **{"indent": 1, "default": _json_default, **kw}))


def save_figure(fig, path, dpi: int = 90) -> Path:
    """A matplotlib figure as PNG through a temp file and a rename; the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path, overwrite=True) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)


@contextmanager
def atomic_path(path, overwrite: bool = False):
    """Yield a temp path next to `path`; on success it replaces `path`, on failure it is removed.

    Readers never see a half-written file, and a failed run leaves the old file untouched.
    """
    path = check_output(path, overwrite)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.tmp-")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result should look like any new file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(path):
    """Hold an exclusive lock on `path` (created if absent) for the block: workers of a study that
    need the same file (one cached clean multislice run) make it once; the others wait, then reuse it."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
