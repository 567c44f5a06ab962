"""The cameras' own files (ccstae/core/readers.py) and the EMD 1.0 maps py4DSTEM opens (ccstae/analysis/emd.py).

Two real files from ../shared/data (its README says what they are): read, inspected, and mapped or
refused in one line. Formats with no real file here are written with rosettasciio's own writer
(.blo) or in the documented layout (.mib + .hdr, EMPAD .xml + .raw, Dectris master + bitshuffle-LZ4
data file) and must read back in py4DSTEM's axis order. No .dm4 is written: no writer exists.
"""
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from ccstae import cli as ccstae_cli
from ccstae.core import cube_writer, data_io, overview, readers

pytest.importorskip("rsciio", reason="rosettasciio is not installed (pip install -e '.[readers]')")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
BLO, FPD = SHARED / "nanomegas_sped_3x2.blo", SHARED / "merlin_fpd_2x2.hdf5"
needs_shared = pytest.mark.skipif(not (BLO.exists() and FPD.exists()),
                                  reason=f"the real detector files are not here ({SHARED} is absent)")


def py4dstem():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("py4DSTEM", reason="py4DSTEM is not installed (pip install -e '.[baseline]')")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained tiny run (32x32 patterns) for `ccstae strain`."""
    root = tmp_path_factory.mktemp("readers_run")
    assert ccstae_cli.main(["train", "--config", "tiny", "--out", str(root / "run"), "--no-progress"]) == 0
    return root / "run"


# ----------------------------------------------------------------------------- the real files


@needs_shared
def test_nanomegas_blo_reads_in_py4dstem_order_with_its_calibration():
    with data_io.open_cube(BLO) as cube:
        assert cube.format == "NanoMegas blockfile .blo" and "NanoMegas ASTAR" in cube.detector
        assert cube.shape == (3, 2, 144, 144) and cube.dtype == np.uint8  # 3 scan rows (Rx) of 2 positions
        data = cube.read_rows(0, 3)
        assert data.dtype == np.float32 and np.array_equal(cube.read_patterns([1, 4]), data.reshape(6, 144, 144)[[1, 4]])
        a = cube.attrs
    row, col, radius = overview.central_disk(data.mean((0, 1)))
    assert abs(row - 72) < 1 and abs(col - 73) < 1 and 5 < radius < 12  # (Qx, Qy) = (row, column)
    assert a["scan_step_A"] == pytest.approx(128.0) and a["beam_energy_kv"] == 200.0
    assert a["scan_rotation_deg"] == 25.0 and 0.01 < a["k_px_inv_A"] < 0.1
    # The same numbers, in the same order, as rosettasciio's eager read.
    from rsciio.blockfile import file_reader
    assert np.array_equal(file_reader(str(BLO))[0]["data"], data)


@needs_shared
def test_merlin_fpd_hdf5_reads_without_its_colour_axis():
    with data_io.open_cube(FPD) as cube:
        assert cube.format == "fpd HDF5 (Merlin frames)" and "Quantum Detectors Merlin" in cube.detector
        assert cube.shape == (2, 2, 256, 256) and cube.dtype == np.dtype(">u2")
        data = cube.read_rows(0, 2)
        assert np.array_equal(cube.read_patterns([3]), data[1, 1][None])
        assert cube.attrs["exposure_ms"] == pytest.approx(7.0)
    with h5py.File(FPD) as f:
        assert np.array_equal(data, f["fpd_expt/fpd_data/data"][:, :, 0].astype(np.float32))
    row, col, radius = overview.central_disk(data.mean((0, 1)))
    assert abs(row - 128) < 8 and abs(col - 128) < 8 and 3 < radius < 8  # a central disk of ~5 px


@needs_shared
@pytest.mark.parametrize("path, words", [(BLO, ["NanoMegas blockfile .blo", "NanoMegas ASTAR", "scan step 128 A",
                                                "beam 200 kV"]),
                                         (FPD, ["fpd HDF5", "Quantum Detectors Merlin", "none recorded"])],
                         ids=["blo", "fpd"])
def test_inspect_names_format_and_detector(path, words, cli, tmp_path):
    rc, out, err = cli("inspect", path, "--png", tmp_path / "o.png", "--no-progress")
    assert rc == 0, err
    for w in words:
        assert w in out, out
    assert (tmp_path / "o.png").stat().st_size > 0


@needs_shared
@pytest.mark.parametrize("path, size", [(BLO, "144x144"), (FPD, "256x256")], ids=["blo", "fpd"])
def test_strain_refuses_another_pattern_size_in_one_line(path, size, run, cli, one_line_error, tmp_path):
    rc, _, err = cli("strain", "--model", run, "--input", path, "--out", tmp_path / "s.h5", "--no-progress")
    one_line_error(rc, err, "strain", str(path), size, "32x32")
    assert list(tmp_path.iterdir()) == []


@needs_shared
def test_baseline_refuses_the_rings_of_the_merlin_file(cli, one_line_error, tmp_path):
    py4dstem()
    rc, _, err = cli("baseline", "--input", FPD, "--out", tmp_path / "b.h5", "--no-progress")
    one_line_error(rc, err, "baseline", str(FPD), "no lattice visible", "rings")
    assert list(tmp_path.iterdir()) == []


@needs_shared
def test_baseline_maps_the_blo_and_py4dstem_reads_them_in_its_own_frame(cli, tmp_path):
    """The EMD maps equal the HDF5 maps and py4DSTEM's own get_strain of the same fit (exx along Rx)."""
    p4 = py4dstem()
    from ccstae.analysis import baseline

    out = tmp_path / "b.h5"
    rc, text, err = cli("baseline", "--input", BLO, "--out", out, "--no-progress")
    assert rc == 0, err
    assert "b.emd" in text
    rs = p4.read(str(out.with_suffix(".emd")))
    with h5py.File(out) as f:
        for k in ("exx", "eyy", "exy", "theta"):
            assert np.array_equal(rs.get_slice(k).data, f[k][()]), k
    with data_io.open_cube(BLO) as cube:
        _, info = baseline.baseline_maps(cube)
    for k in ("exx", "eyy", "exy"):
        np.testing.assert_allclose(rs.get_slice(k).data, info["p4_maps"][k], atol=2e-3, err_msg=k)
    cal = rs.calibration
    assert cal.get_R_pixel_size() == pytest.approx(128.0) and cal.get_R_pixel_units() == "A"
    assert cal.get_Q_pixel_units() == "A^-1" and cal.get_QR_rotation_degrees() == 0.0
    meta = rs.metadata["ccstae"]
    assert list(meta["reference_rows"]) == [0, 3] and meta["input_format"] == "NanoMegas blockfile .blo"


# ----------------------------------------------------------------------------- the EMD file of `ccstae strain`


def test_strain_writes_an_emd_file_py4dstem_opens(run, cli, tmp_path):
    p4 = py4dstem()
    sim = tmp_path / "sim.h5"
    assert ccstae_cli.main(["simulate", "--preset", "tiny", "--seed", "5", "--no-progress", "--out", str(sim)]) == 0
    with data_io.open_cube(sim) as cube:  # a 12 x 7 scan, so that Rx and Ry cannot be confused
        data, attrs = cube.read_rows(0, 12)[:, :7], dict(cube.attrs)
    cube_path = cube_writer.write_cube(tmp_path / "cut.h5", data, attrs={"scan_step_A": 2.5,
                                                                      "k_px_inv_A": attrs["k_px_inv_A"]})
    out = tmp_path / "s.h5"
    rc, text, err = cli("strain", "--model", run, "--input", cube_path, "--out", out, "--region", "2:8,1:4",
                        "--no-progress")
    assert rc == 0, err
    assert f"{out.with_suffix('.emd')} (EMD 1.0" in text
    rs = p4.read(str(out.with_suffix(".emd")))
    assert type(rs).__name__ == "RealSlice" and rs.name == "strain_map"
    with h5py.File(out) as f:
        for k in ("exx", "eyy", "exy", "theta", "exx_std", "theta_std"):
            assert rs.get_slice(k).data.shape == (12, 7), k
            assert np.array_equal(rs.get_slice(k).data, f[k][()]), k
    cal = rs.calibration
    assert cal.get_R_pixel_size() == 2.5 and cal.get_Q_pixel_size() == pytest.approx(attrs["k_px_inv_A"])
    assert cal.get_QR_rotation_degrees() == 0.0 and cal.get_QR_flip() is False
    meta = rs.metadata["ccstae"]
    assert meta["reference_region"] == "2:8,1:4" and list(meta["reference_rows"]) == [2, 8]
    assert list(meta["reference_cols"]) == [1, 4] and meta["theta_units"] == "radians"
    assert meta["strain_frame"].startswith("py4DSTEM: x along Rx")
    rc, _, err = cli("strain", "--model", run, "--input", cube_path, "--out", out, "--no-progress")
    assert rc == 2 and "--overwrite" in err


# ----------------------------------------------------------------------------- synthetic files


def marked_frames(n, shape, dtype):
    """n frames, each with one bright pixel at (row 1 + i % 3, column 2 + i): the order and orientation show."""
    frames = np.zeros((n,) + shape, dtype)
    for i in range(n):
        frames[i, 1 + i % 3, 2 + i] = 100 + i
    return frames


def mib_header(seq: int, rows: int, cols: int) -> bytes:
    """A single-chip Merlin frame header, 384 bytes, as the camera writes it (U16, time stamp, exposure)."""
    text = (f"MQ1,{seq:06d},00384,01,{cols:04d},{rows:04d},U16,   1x1,01,2020-01-01 00:00:00.000000,0.001000,"
            "0,0,0,1.200000E+1,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,"
            "0.000000E+0,3RX,175,511,000,000,000,000,000,000,125,255,125,125,100,100,082,100,087,030,128,004,"
            "255,129,128,176,168,511,511,MQ1A,2020-01-01T00:00:00.000000000Z,1000000nS,12,")
    return text.encode().ljust(384, b"\0")


def write_mib(path, frames, per_row=None):
    with open(path, "wb") as f:
        for i, frame in enumerate(frames):
            f.write(mib_header(i + 1, *frame.shape) + frame.astype(">u2").tobytes())
    if per_row:
        Path(path).with_suffix(".hdr").write_text(
            "HDR:\t\nTime and Date Stamp (day, mnth, yr, hr, min, s):\t01/01/2020 00:00:00\n"
            f"Frames in Acquisition (Number):\t{len(frames)}\nFrames per Trigger (Number):\t{per_row}\n"
            "Counter Depth (number):\t12\nEnd\t\n")


def test_merlin_mib_reads_frames_as_stored_like_py4dstem(tmp_path):
    frames = marked_frames(6, (256, 256), np.uint16)
    write_mib(tmp_path / "a.mib", frames, per_row=3)
    with data_io.open_cube(tmp_path / "a.mib") as cube:
        assert cube.format == "Quantum Detectors Merlin .mib" and "Merlin" in cube.detector
        assert cube.shape == (2, 3, 256, 256) and cube.attrs["exposure_ms"] == pytest.approx(1.0)
        assert np.array_equal(cube.read_rows(0, 2), frames.reshape(2, 3, 256, 256))
    p4 = py4dstem()
    (tmp_path / "a.hdr").write_text((tmp_path / "a.hdr").read_text() + "ScanX:\t3\nScanY:\t2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = p4.import_file(str(tmp_path / "a.mib"))
    assert np.array_equal(np.asarray(theirs.data), frames.reshape(2, 3, 256, 256))


def test_a_mib_without_its_scan_shape_takes_scan(tmp_path, cli, one_line_error):
    frames = marked_frames(6, (16, 16), np.uint16)
    write_mib(tmp_path / "b.mib", frames)
    with data_io.open_cube(tmp_path / "b.mib", scan=(3, 2)) as cube:
        assert cube.shape == (3, 2, 16, 16) and cube.attrs["scan_shape_source"] == "--scan"
        assert np.array_equal(cube.read_patterns([0, 5]), frames[[0, 5]].astype(np.float32))
    rc, out, err = cli("inspect", tmp_path / "b.mib", "--scan", "3,2", "--no-png")
    assert rc == 0 and "(3, 2, 16, 16)" in out, err
    rc, _, err = cli("inspect", tmp_path / "b.mib", "--scan", "4,2", "--no-png")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and str(tmp_path / "b.mib") in err


def test_blockfile_round_trip_through_rosettasciio_writer(tmp_path):
    from rsciio.blockfile import file_writer

    frames = marked_frames(12, (16, 16), np.uint8)
    axes = [{"name": n, "size": s, "scale": sc, "offset": 0.0, "units": u, "navigate": nav, "index_in_array": i}
            for i, (n, s, sc, u, nav) in enumerate([("y", 3, 5.0, "nm", True), ("x", 4, 5.0, "nm", True),
                                                      ("dy", 16, 0.02, "cm", False), ("dx", 16, 0.02, "cm", False)])]
    signal = {"data": frames.reshape(3, 4, 16, 16), "axes": axes, "metadata": {}, "original_metadata": {},
              "attributes": {"_lazy": False}}
    file_writer(str(tmp_path / "s.blo"), signal, navigator=None, show_progressbar=False)
    with data_io.open_cube(tmp_path / "s.blo") as cube:
        assert cube.shape == (3, 4, 16, 16) and cube.attrs["scan_step_A"] == 50.0
        assert "beam_energy_kv" not in cube.attrs  # 0 in the header: not recorded
        assert np.array_equal(cube.read_rows(0, 3), frames.reshape(3, 4, 16, 16))


def write_empad(folder: Path, frames, scan):
    """EMPAD: float32 frames of 130 rows x 128 columns (2 trailing rows of metadata) and the .xml naming them."""
    raw = np.zeros((len(frames), 130, 128), "<f4")
    raw[:, :128] = frames
    raw[:, 128:] = -1  # the metadata rows: never data
    name = f"scan_x{scan[1]}_y{scan[0]}.raw"
    raw.tofile(folder / name)
    (folder / "acq.xml").write_text(f'<root><raw_file filename="{name}"/><pix_x>{scan[1]}</pix_x>'
                                    f"<pix_y>{scan[0]}</pix_y></root>")
    return folder / name


def test_empad_reads_through_its_xml_from_either_file(tmp_path):
    frames = marked_frames(12, (128, 128), np.float32)
    raw = write_empad(tmp_path, frames, (3, 4))
    for path in (tmp_path / "acq.xml", raw):
        with data_io.open_cube(path) as cube:
            assert cube.format == "EMPAD .xml + .raw" and cube.shape == (3, 4, 128, 128)
            assert np.array_equal(cube.read_rows(0, 3), frames.reshape(3, 4, 128, 128))
    p4 = py4dstem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = p4.import_file(str(raw), filetype="empad", EMPAD_shape=(3, 4, 130, 128))
    assert np.array_equal(np.asarray(theirs.data), frames.reshape(3, 4, 128, 128))


def test_an_empad_raw_without_its_xml_is_one_line(tmp_path, cli, one_line_error):
    raw = write_empad(tmp_path, marked_frames(4, (128, 128), np.float32), (2, 2))
    (tmp_path / "acq.xml").unlink()
    rc, _, err = cli("inspect", raw, "--no-png")
    one_line_error(rc, err, "inspect", str(raw), ".xml")


def write_dectris(folder: Path, frames, wavelength_A=0.02508):
    """A Dectris NeXus master (entry/data/data_000001 linked to a data file, bitshuffle-LZ4 like the camera)."""
    import hdf5plugin

    with h5py.File(folder / "scan_data_000001.h5", "w") as f:
        f.create_dataset("entry/data/data", data=frames, chunks=(1,) + frames.shape[1:],
                         **hdf5plugin.Bitshuffle(cname="lz4"))
    with h5py.File(folder / "scan_master.h5", "w") as f:
        f["entry/data/data_000001"] = h5py.ExternalLink("scan_data_000001.h5", "entry/data/data")
        det = f.create_group("entry/instrument/detector")
        det["description"] = b"Dectris ARINA Si 96x96"
        det["x_pixel_size"], det["detector_distance"], det["count_time"] = 100e-6, 0.1, 1e-4
        f["entry/instrument/beam/incident_wavelength"] = wavelength_A
    return folder / "scan_master.h5"


def test_dectris_master_with_bitshuffle_lz4_reads_lazily(tmp_path):
    frames = marked_frames(9, (96, 96), np.uint16)
    master = write_dectris(tmp_path, frames)
    with h5py.File(tmp_path / "scan_data_000001.h5") as f:
        assert f["entry/data/data"].id.get_create_plist().get_filter(0)[0] == 32008  # bitshuffle (+ LZ4)
    with data_io.open_cube(master) as cube:
        assert cube.format.startswith("Dectris") and cube.detector == "Dectris ARINA Si 96x96"
        assert cube.shape == (3, 3, 96, 96)  # 9 frames: square, as no scan shape is recorded
        assert np.array_equal(cube.read_rows(1, 2)[0], frames[3:6].astype(np.float32))
        assert np.array_equal(cube.read_patterns([2, 4, 8]), frames[[2, 4, 8]].astype(np.float32))
        assert cube.attrs["beam_energy_kv"] == pytest.approx(200, abs=0.5)
        assert cube.attrs["k_px_inv_A"] == pytest.approx(100e-6 / 0.1 / 0.02508)
    with data_io.open_cube(master, scan=(1, 9)) as cube:
        assert cube.shape == (1, 9, 96, 96)


@pytest.mark.parametrize("name, build, words", [
    ("counted.h5", lambda p: h5py.File(p, "w").create_dataset("electron_events/frames", data=np.zeros(3)),
     ["NCEM 4D Camera", "stempy"]),
    ("broken.blo", lambda p: p.write_bytes(b"IMGBLO" + b"\0" * 50), ["blockfile"]),
    ("broken.mib", lambda p: p.write_bytes(b"MQ1,000001"), ["Merlin"]),
    ("broken.dm4", lambda p: p.write_bytes(b"\0" * 100), ["DigitalMicrograph"]),
], ids=["ncem-counted", "truncated-blo", "truncated-mib", "not-a-dm4"])
def test_unreadable_camera_files_are_one_line(name, build, words, tmp_path, cli, one_line_error):
    path = tmp_path / name
    made = build(path)
    if hasattr(made, "file"):
        made.file.close()
    rc, _, err = cli("inspect", path, "--no-png")
    one_line_error(rc, err, "inspect", str(path), *words)


def test_camera_suffixes_and_hdf5_layouts_are_recognised(tmp_path):
    assert {readers.SUFFIXES[s] for s in (".mib", ".blo", ".dm4", ".dm3", ".xml", ".raw")} == \
        {"merlin", "blockfile", "dm", "empad"}
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("fpd_expt/fpd_data/data", shape=(1, 1, 1, 4, 4), dtype="u2")
        assert readers.hdf5_format(f) == "fpd"
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.create_dataset("datacube", shape=(1, 1, 4, 4), dtype="f4")
        assert readers.hdf5_format(f) is None
