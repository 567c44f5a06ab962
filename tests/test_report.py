"""Accuracy-vs-resource report on fake variants: files, rows, recommendations, CSV, PNGs."""
import csv

import pytest

from ccstae.firmware import estimate as E
from ccstae.studies import report as R

CAL = "run"  # the leave-one-out error bars of ccstae/firmware/calibration/fit.json (no conversion)


def fake_estimate(lut, dsp, ii, latency):
    est = {"kind": E.KIND_ESTIMATE, "io_type": "io_stream", "clock_period_ns": 5.0, "layers": [], "fifos": [],
           "total": {"LUT": lut, "FF": lut // 4, "DSP": dsp, "BRAM18": 40}, "latency_cycles": latency,
           "ii_cycles": ii}
    return E.finish(est)


def variant(name, bits, lut, dsp, ii, mae):
    levels = {0.0: mae, 0.5: 2 * mae}
    return {"name": name, "bits": bits, "sparsity": 0.5, "reuse_factor": 1, "strategy": "Latency",
            "io_type": "io_stream", "estimate": fake_estimate(lut, dsp, ii, ii + 20),
            "mae": {w: {"exx": m, "eyy": m * 1.1, "exy": m / 2, "theta": m * 3} for w, m in levels.items()},
            "float_mae": {w: {"exx": m * 0.9, "eyy": m, "exy": m / 2, "theta": m * 3} for w, m in levels.items()},
            "exact_fraction": 1.0}


@pytest.fixture
def variants():
    return [variant("q8-64px", 8, 210_000, 0, 4096, 0.002),     # most accurate, 48.8 k patterns/s
            variant("q8-32px", 8, 60_000, 0, 1024, 0.004),      # 195 k patterns/s
            variant("q16-64px", 16, 600_000, 3_000, 4096, 0.0019)]  # over the 70 % headroom


def test_write_report_files(variants, tmp_path):
    out = R.write_report(variants, tmp_path / "rep", calibration=CAL)
    d = tmp_path / "rep"
    for name in ("report.md", "report.csv", "report.html", "pareto_lut.png", "pareto_dsp.png",
                 "pareto_latency.png"):
        assert (d / name).exists(), name
    assert not list(d.glob("*.tmp"))
    md = (d / "report.md").read_text()
    for v in variants:
        assert sum(line.startswith(f"| {v['name']} |") for line in md.splitlines()) >= 3  # 3 tables
    for det in E.DETECTORS.values():
        assert f"### {det['name']}:" in md
    assert "estimate (hls4ml graph model)" in md
    assert " +- " in md and "leave-one-out" in md   # every estimate carries its error bar
    with open(d / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == [v["name"] for v in variants]
    assert float(table[0]["LUT"]) == 210_000 and float(table[1]["rel_exx_w0.0"]) == pytest.approx(1 / 0.9)
    for png in out["png"]:
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    html = (d / "report.html").read_text()
    assert 'src="pareto_lut.png"' in html and "<table>" in html


def test_recommendations(variants):
    recs = {r["detector"]: r for r in (R.recommend(variants, d, "xcku115") for d in E.DETECTORS)}
    # Slow camera: the most accurate variant that fits (q16 is over the headroom).
    assert recs["EMPAD (Thermo Fisher)"]["variant"] == "q8-64px"
    # 87 kHz: only the 32x32 input keeps up.
    assert recs["NCEM 4D Camera"]["variant"] == "q8-32px"
    assert any("excluded" in why for why in recs["NCEM 4D Camera"]["reasons"])
    # Nothing keeps up with a 1 MHz camera.
    assert R.recommend(variants, {"name": "fast", "frame_rate_hz": 1e6}, "xcku115")["variant"] is None


def test_pareto_front():
    assert R.pareto_front([1, 2, 3, 2], [3, 2, 1, 3]) == [0, 1, 2]
