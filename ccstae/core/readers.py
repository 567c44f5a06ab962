"""The cameras' own files, read lazily into cubes in py4DSTEM's axis order (Rx, Ry, Qx, Qy).

    data, info = open_camera_file(path)      # or through data_io.open_cube, which dispatches here

`data` is array-like (a dask array, or a view of HDF5 datasets): indexing it reads only the
scan rows or patterns asked for, like the HDF5 and .npy cubes of ccstae/core/data_io.py.
`info` = {"format", "detector", "dataset", "attrs"}; attrs carries the calibrations the file
records under the names our simulated cubes use (scan_step_A, k_px_inv_A, beam_energy_kv)
plus the format's own (exposure_ms, camera_length_mm, ...).

Axes: every reader keeps the order in which the file stores the data, as py4DSTEM.import_file
does: numpy axis 0 (Rx) is the slow scan direction (scan rows), axis 1 (Ry) the fast one,
axis 2 (Qx) the detector rows and axis 3 (Qy) the detector columns. The one place this differs
from rosettasciio: its Merlin reader flips the detector rows (np.flip(axis=-2)), which we undo,
so a .mib pattern here is the one py4DSTEM shows.

Formats (docs/data.md has the table): Quantum Detectors Merlin .mib (+ .hdr), NanoMegas .blo,
EMPAD .xml + .raw, Gatan .dm3/.dm4 (rosettasciio); Dectris ARINA / EIGER master HDF5 (h5py +
hdf5plugin for the bitshuffle-LZ4 filter: rosettasciio's ARINA reader loads the whole scan into
memory), and fpd HDF5 (Merlin frames as the fpd package writes them). The NCEM 4D Camera's
counted HDF5 (electron events) is recognised and refused: no reader in rosettasciio 0.15.

Heavy imports (rsciio, hdf5plugin, dask) stay inside the functions: `ccstae --help` stays quick.
"""
from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from ccstae.core.errors import DataError

# suffix -> format key; HDF5 layouts are recognised by their content (hdf5_format).
SUFFIXES = {".mib": "merlin", ".blo": "blockfile", ".dm4": "dm", ".dm3": "dm", ".xml": "empad", ".raw": "empad"}
FORMAT_NAMES = {"merlin": "Quantum Detectors Merlin .mib", "blockfile": "NanoMegas blockfile .blo",
                "dm": "Gatan DigitalMicrograph", "empad": "EMPAD .xml + .raw", "fpd": "fpd HDF5 (Merlin frames)",
                "arina": "Dectris NeXus master HDF5 (ARINA / EIGER)", "ncem_counted": "NCEM 4D Camera counted HDF5"}
READ_CHUNK = "16MiB"  # dask chunks of the rosettasciio readers: a scan row or a few, not 128 MiB


def electron_wavelength_A(kv: float) -> float:
    """Relativistic electron wavelength (Angstrom) at kv kilovolts (as ccstae/physics does)."""
    v = kv * 1e3
    return 12.2642598 / math.sqrt(v * (1 + 0.978475e-6 * v))


def hdf5_format(f: h5py.File) -> str | None:
    """The camera layout of an open HDF5 file, or None (our own / EMD / any 4D dataset)."""
    if "fpd_expt/fpd_data/data" in f:
        return "fpd"
    if "electron_events/frames" in f:
        return "ncem_counted"
    if "entry/data" in f and isinstance(f["entry/data"], h5py.Group) and any(
            k.startswith("data_") for k in f["entry/data"]):
        return "arina"
    return None


def open_camera_file(path, fmt: str, scan: tuple[int, int] | None = None, h5file: h5py.File | None = None):
    """(data, info) of a camera file whose format key `fmt` is known (SUFFIXES / hdf5_format).

    h5file: the open file of an HDF5 layout (opened here if None). It becomes info["file"], which
    the Cube closes, or is closed here when the file cannot be read. Every failure to read is
    one DataError naming the file."""
    path = Path(path)
    try:
        if fmt in HDF5_FORMATS:
            h5file = h5file if h5file is not None else h5py.File(path, "r")
            data, info = OPENERS[fmt](path, scan, h5file)
        else:
            data, info = OPENERS[fmt](path, scan)
        return _check_4d(path, data, scan), {"format": FORMAT_NAMES[fmt], **info}
    except BaseException as e:
        if h5file is not None:
            h5file.close()
        if isinstance(e, ImportError):
            raise DataError(f"{path}: reading {FORMAT_NAMES[fmt]} needs rosettasciio and hdf5plugin: "
                            f"pip install -e '.[readers]' ({e})") from None
        if isinstance(e, (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError)) and \
                not isinstance(e, DataError):
            raise DataError(f"{path}: cannot read it as {FORMAT_NAMES[fmt]} ({type(e).__name__}: {e})") from None
        raise


def _check_4d(path, data, scan):
    if data.ndim == 3:
        raise DataError(f"{path}: {data.shape[0]} frames and no scan shape recorded; give it with --scan RX,RY")
    if data.ndim != 4:
        raise DataError(f"{path}: data of shape {tuple(data.shape)}, expected 4D (Rx, Ry, Qx, Qy)")
    if scan is not None and tuple(data.shape[:2]) != tuple(scan):
        raise DataError(f"{path}: the file records a {data.shape[0]}x{data.shape[1]} scan, not --scan "
                        f"{scan[0]},{scan[1]}")
    return data


def _rsciio(module: str, path: Path, **kw) -> list[dict]:
    """rosettasciio's file_reader(lazy=True) with small dask chunks; its chatter kept quiet."""
    import importlib
    import logging
    import warnings

    import dask

    logging.getLogger("rsciio").setLevel(logging.ERROR)
    reader = importlib.import_module(f"rsciio.{module}").file_reader
    with warnings.catch_warnings(), dask.config.set({"array.chunk-size": READ_CHUNK}):
        warnings.simplefilter("ignore")
        return reader(str(path), lazy=True, **kw)


def _axes_calibration(axes: list[dict]) -> dict:
    """scan_step_A and k_px_inv_A from rosettasciio axes (numpy order), where their units say so."""
    to_A = {"m": 1e10, "mm": 1e7, "µm": 1e4, "um": 1e4, "nm": 10.0, "pm": 0.01, "Å": 1.0, "A": 1.0}
    to_inv_A = {"1/nm": 0.1, "nm^-1": 0.1, "1/Å": 1.0, "1/A": 1.0, "Å^-1": 1.0, "1/m": 1e-10}
    nav = [a for a in axes if a.get("navigate")]
    sig = [a for a in axes if not a.get("navigate", True)]
    out = {}
    if nav and str(nav[0].get("units")) in to_A:
        out["scan_step_A"] = float(nav[0]["scale"]) * to_A[str(nav[0]["units"])]
        if len(nav) > 1 and not math.isclose(nav[1]["scale"], nav[0]["scale"], rel_tol=1e-6):
            out["scan_step_Ry_A"] = float(nav[1]["scale"]) * to_A.get(str(nav[1]["units"]), float("nan"))
    if sig and str(sig[0].get("units")) in to_inv_A:
        out["k_px_inv_A"] = float(sig[0]["scale"]) * to_inv_A[str(sig[0]["units"])]
    return out


def merlin_header(header: bytes | str) -> dict:
    """The fields of a Merlin frame header (MQ1,...) worth carrying: size, depth, chips, exposure."""
    text = header.decode("ascii", "replace") if isinstance(header, bytes) else header
    f = [v.strip() for v in text.split(",")]
    if len(f) < 11 or f[0] != "MQ1":
        return {}
    out = {"merlin_pixel_depth": f[6], "merlin_chip_layout": f[7], "merlin_timestamp": f[9]}
    try:
        out["exposure_ms"] = float(f[10]) * 1e3  # the shutter time, in seconds
    except ValueError:
        pass
    return out


# ------------------------------------------------------------------------------ rosettasciio


def _open_mib(path: Path, scan):
    rec = _rsciio("quantumdetector", path, navigation_shape=None if scan is None else (scan[1], scan[0]))[0]
    data = rec["data"][..., ::-1, :]  # undo rosettasciio's flip of the detector rows (py4DSTEM's orientation)
    with open(path, "rb") as f:
        attrs = merlin_header(f.read(768))
    hdr = rec["original_metadata"].get("hdr_file") or {}
    # The .mib holds frames, not a scan: the shape comes from --scan, else from the .hdr's frames per
    # trigger (one trigger a scan row), else from rosettasciio's reading of the frame time stamps.
    attrs["scan_shape_source"] = ("--scan" if scan is not None else ".hdr (frames per trigger)" if hdr
                                  else "frame time stamps (rosettasciio)")
    for key in ("Frames in Acquisition (Number)", "Frames per Trigger (Number)", "Counter Depth (number)"):
        if key in hdr:
            attrs["hdr: " + key] = hdr[key]
    chips = attrs.get("merlin_chip_layout", "")
    return data, {"detector": f"Quantum Detectors Merlin (Medipix3, {chips or 'chips not recorded'})",
                  "dataset": None, "attrs": attrs}


def _open_blo(path: Path, scan):
    rec = _rsciio("blockfile", path)[0]
    h = rec["original_metadata"]["blockfile_header"]
    attrs = {"scan_step_A": float(h["SY"]) * 10.0}  # nm; SY: the step between scan rows (Rx)
    if not math.isclose(float(h["SX"]), float(h["SY"])):
        attrs["scan_step_Ry_A"] = float(h["SX"]) * 10.0
    if h["Beam_energy"]:  # 0: not recorded
        attrs["beam_energy_kv"] = float(h["Beam_energy"]) / 1e3  # volts
    if h["Camera_length"]:
        attrs["camera_length_mm"] = float(h["Camera_length"]) / 10.0  # 10 x mm
    attrs["scan_rotation_deg"] = float(h["Scan_rotation"]) / 100.0  # 100 x degrees
    attrs["dp_rotation_deg"] = float(h["DP_rotation"]) / 100.0
    if h["SDP"]:
        # SDP: pixels per cm of the recorded screen image (x 100); with the nominal camera length it
        # gives a nominal reciprocal pixel size, which a calibration on the data should replace.
        pixel_m = 1.0 / float(h["SDP"])
        attrs["screen_pixel_um"] = pixel_m * 1e6
        if "camera_length_mm" in attrs and "beam_energy_kv" in attrs:
            attrs["k_px_inv_A"] = (pixel_m / (attrs["camera_length_mm"] * 1e-3)) / electron_wavelength_A(
                attrs["beam_energy_kv"])
            attrs["k_px_source"] = "nominal: screen pixel / camera length / wavelength"
    note = str(h.get("Note", "")).strip()
    if note:
        attrs["note"] = " ".join(note.split())
    return rec["data"], {"detector": "NanoMegas ASTAR (precession; camera filming the viewing screen)",
                         "dataset": None, "attrs": attrs}


def _open_empad(path: Path, scan):
    xml = path if path.suffix.lower() == ".xml" else _empad_xml_for(path)
    rec = _rsciio("empad", xml)[0]
    attrs = _axes_calibration(rec["axes"])
    if xml != path:
        attrs["empad_xml"] = str(xml)
    return rec["data"], {"detector": "EMPAD (electron microscope pixel array detector)", "dataset": None,
                         "attrs": attrs}


def _empad_xml_for(raw: Path) -> Path:
    """The .xml beside an EMPAD .raw that names it (the .raw holds no shape of its own)."""
    for xml in sorted(raw.parent.glob("*.xml")):
        try:
            if raw.name in xml.read_text(errors="replace"):
                return xml
        except OSError:
            continue
    raise DataError(f"{raw}: an EMPAD .raw needs its .xml (scan shape, calibration) in the same folder; "
                    "none there names this file")


def _open_dm(path: Path, scan):
    records = _rsciio("digitalmicrograph", path)
    four_d = [r for r in records if r["data"].ndim == 4]
    if not four_d:
        shapes = ", ".join(str(tuple(r["data"].shape)) for r in records)
        raise DataError(f"{path}: no 4D dataset in this DigitalMicrograph file (datasets of shape {shapes})")
    rec = four_d[0]
    attrs = _axes_calibration(sorted(rec["axes"], key=lambda a: a.get("index_in_array", 0)))
    tem = rec["metadata"].get("Acquisition_instrument", {}).get("TEM", {})
    if tem.get("beam_energy"):
        attrs["beam_energy_kv"] = float(tem["beam_energy"])
    if tem.get("camera_length"):
        attrs["camera_length_mm"] = float(tem["camera_length"])
    camera = _find_key(rec["original_metadata"], ("Acquisition", "Device", "Name")) or "camera not recorded"
    return rec["data"], {"detector": f"Gatan ({camera})", "dataset": None, "attrs": attrs}


def _find_key(tree: dict, keys: tuple):
    """tree[k0][k1]... searched anywhere in a nested dict (DM tags nest under ImageList.TagGroupN)."""
    if not isinstance(tree, dict):
        return None
    node = tree
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    if node is not None and not isinstance(node, dict):
        return node
    for v in tree.values():
        found = _find_key(v, keys)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------------------ HDF5 layouts


class Squeezed:
    """An HDF5 dataset seen without one length-1 axis (fpd's colour axis): reads stay lazy."""

    def __init__(self, dataset, axis: int):
        self.dataset, self.axis = dataset, axis
        self.shape = tuple(n for i, n in enumerate(dataset.shape) if i != axis)
        self.dtype, self.ndim = dataset.dtype, len(self.shape)

    def __getitem__(self, index):
        index = list(index) if isinstance(index, tuple) else [index]
        index += [slice(None)] * (self.axis - len(index))
        index.insert(self.axis, 0)
        return self.dataset[tuple(index)]


class FrameStack:
    """Frames (n, Qx, Qy) split over several HDF5 datasets (a NeXus master's data_000001, ...),
    seen as a (Rx, Ry, Qx, Qy) scan; indexing the two scan axes reads only those frames."""

    def __init__(self, datasets, scan):
        self.datasets = datasets
        self.starts = np.cumsum([0] + [d.shape[0] for d in datasets])
        self.shape = tuple(int(v) for v in scan) + tuple(datasets[0].shape[1:])
        self.dtype, self.ndim = datasets[0].dtype, 4

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        rows = np.arange(self.shape[0])[index[0]]
        cols = np.arange(self.shape[1])[index[1] if len(index) > 1 else slice(None)]
        flat = (np.reshape(rows, (-1, 1)) * self.shape[1] + np.reshape(cols, (1, -1))).ravel()
        frames = self._frames(flat).reshape(np.shape(rows) + np.shape(cols) + self.shape[2:])
        return frames[(Ellipsis,) + tuple(index[2:]) + (slice(None),) * (2 - len(index[2:]))]

    def _frames(self, flat: np.ndarray) -> np.ndarray:
        out = np.empty((len(flat),) + self.shape[2:], self.dtype)
        which = np.searchsorted(self.starts, flat, side="right") - 1
        for d in np.unique(which):
            at = np.flatnonzero(which == d)
            local = flat[at] - self.starts[d]
            if np.all(np.diff(local) == 1):  # a contiguous run: one slice
                out[at] = self.datasets[d][int(local[0]):int(local[-1]) + 1]
            else:
                order = np.argsort(local)
                out[at[order]] = self.datasets[d][np.sort(local).tolist()]
        return out


def _open_fpd(path: Path, scan, f: h5py.File):
    ds = f["fpd_expt/fpd_data/data"]
    if ds.ndim != 5:
        raise DataError(f"{path}: fpd_expt/fpd_data/data has shape {ds.shape}, expected (scanY, scanX, colour, "
                        "detY, detX)")
    if ds.shape[2] != 1:
        raise DataError(f"{path}: fpd data with {ds.shape[2]} colours (thresholds): only one is read")
    attrs = {"fpd_version": str(f.attrs.get("fpd_version", "?"))}
    if "fpd_expt/binary_hdr/data" in f:
        attrs.update(merlin_header(f["fpd_expt/binary_hdr/data"][(0,) * f["fpd_expt/binary_hdr/data"].ndim]))
    if "fpd_expt/Exposure/data" in f:  # nanoseconds, per frame
        attrs["exposure_ms"] = float(np.ravel(f["fpd_expt/Exposure/data"][()])[0]) / 1e6
    chips = attrs.get("merlin_chip_layout", "chips not recorded")
    return Squeezed(ds, 2), {"detector": f"Quantum Detectors Merlin (Medipix3, {chips})",
                             "dataset": "/fpd_expt/fpd_data/data", "attrs": attrs, "file": f}


def _open_arina(path: Path, scan, f: h5py.File):
    import hdf5plugin  # noqa: F401  registers the bitshuffle-LZ4 filter the detector writes

    names = sorted(k for k in f["entry/data"] if k.startswith("data_"))
    try:
        datasets = [f["entry/data"][k] for k in names]
    except KeyError as e:  # an external link whose data file is missing
        raise DataError(f"{path}: a data file of this master is missing beside it ({e})") from None
    n = sum(d.shape[0] for d in datasets)
    attrs = {"scan_shape_source": "--scan" if scan is not None else "square (not recorded in the file)"}
    if scan is None:
        side = math.isqrt(n)
        if side * side != n:
            raise DataError(f"{path}: {n} frames and no scan shape recorded (not a square scan); give it with "
                            "--scan RX,RY")
        scan = (side, side)
    if scan[0] * scan[1] != n:
        raise DataError(f"{path}: {n} frames do not fill a {scan[0]}x{scan[1]} scan")
    det = f.get("entry/instrument/detector")
    detector = "Dectris (detector not described)"
    if det is not None:
        if "description" in det:
            detector = _text(det["description"][()])
        pixel = _number(det, "x_pixel_size")  # m
        distance = _number(det, "detector_distance")  # m
        wavelength = _number(f.get("entry/instrument/beam"), "incident_wavelength")  # Angstrom
        for key, value in (("detector_pixel_um", pixel and pixel * 1e6), ("camera_length_mm", distance and distance * 1e3),
                           ("exposure_ms", (_number(det, "count_time") or 0) * 1e3 or None)):
            if value:
                attrs[key] = value
        if wavelength:
            attrs["beam_energy_kv"] = _kv_from_wavelength(wavelength)
            if pixel and distance:
                attrs["k_px_inv_A"] = pixel / distance / wavelength
    return FrameStack(datasets, scan), {"detector": detector, "dataset": "/entry/data/data_*", "attrs": attrs,
                                        "file": f}


def _refuse_ncem(path: Path, scan, f: h5py.File):
    raise DataError(f"{path}: NCEM 4D Camera counted data (electron events) is not readable here (rosettasciio "
                    "0.15 has no reader); make it a dense 4D HDF5 with stempy and read that")


def _text(v) -> str:
    v = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return v.strip()


def _number(group, name):
    if group is None or name not in group:
        return None
    try:
        return float(np.ravel(group[name][()])[0])
    except (TypeError, ValueError):
        return None


def _kv_from_wavelength(wavelength_A: float) -> float:
    """Beam energy (kV) whose relativistic wavelength is wavelength_A (inverse of electron_wavelength_A)."""
    c = (12.2642598 / wavelength_A) ** 2  # = V (1 + 0.978475e-6 V)
    return (-1 + math.sqrt(1 + 4 * 0.978475e-6 * c)) / (2 * 0.978475e-6) / 1e3


HDF5_FORMATS = ("fpd", "arina", "ncem_counted")
OPENERS = {"merlin": _open_mib, "blockfile": _open_blo, "dm": _open_dm, "empad": _open_empad,
           "fpd": _open_fpd, "arina": _open_arina, "ncem_counted": _refuse_ncem}
