"""The vendor HLS flow (Vitis HLS / Vivado HLS), when a machine has it: C-simulation and
synthesis of a written project through its build_prj.tcl, and the reports they leave.

None of this runs on the developer and CI machines (no vendor tools there): the functions
then return None with SKIP_REASON, and ccstae/firmware/csim.py is the C-simulation that always runs.
The report parser works on files alone, so it is tested on a hand-made csynth report.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from pathlib import Path

from ccstae.core.outputs import atomic_path, atomic_write
from ccstae.core.errors import UserError

TOOLS = ("vitis_hls", "vitis-run", "vivado_hls")
SKIP_REASON = "vitis_hls/vivado_hls not on PATH: skipped"
STEPS = ("reset", "csim", "synth", "cosim", "validation", "export", "vsynth", "fifo_opt")


def find_vendor_tool() -> str | None:
    """The first vendor HLS executable on PATH, or None."""
    for tool in TOOLS:
        if shutil.which(tool):
            return tool
    return None


def project_backend(prj_dir) -> str:
    """'vitis' or 'vivado', from the project's project.tcl."""
    tcl = Path(prj_dir) / "project.tcl"
    if not tcl.exists():
        raise UserError(f"{prj_dir}: no project.tcl; convert the encoder first (ccstae.firmware.convert)")
    for line in tcl.read_text().splitlines():
        if line.strip().startswith("set backend"):
            return line.split('"')[-2].lower()
    return "vivado"


def _command(prj_dir: Path, steps: dict) -> list[str] | None:
    """The vendor command for this project's backend, or None when its tool is missing.

    Mirrors hls4ml's backends' build(): a Vitis project reads its steps from build_opt.tcl,
    a Vivado HLS project takes them as arguments.
    """
    opts = {s: int(steps.get(s, 0)) for s in STEPS}
    if project_backend(prj_dir).startswith("vitis"):
        tool = next((t for t in ("vitis-run", "vitis_hls") if shutil.which(t)), None)
        if tool is None:
            return None
        atomic_write(prj_dir / "build_opt.tcl",
            "array set opt {\n" + "".join(f"    {k:<10} {v}\n" for k, v in opts.items()) + "}\n")
        return ["vitis-run", "--tcl", "build_prj.tcl", "--mode", "hls"] if tool == "vitis-run" \
            else ["vitis_hls", "-f", "build_prj.tcl"]
    if shutil.which("vivado_hls"):
        return ["vivado_hls", "-f", "build_prj.tcl", " ".join(f"{k}={v}" for k, v in opts.items())]
    return None


def _run(prj_dir, steps: dict, timeout: float) -> dict | None:
    prj_dir = Path(prj_dir)
    cmd = _command(prj_dir, steps)
    if cmd is None:
        print(SKIP_REASON)
        return None
    with atomic_path(prj_dir / "vendor_build.log", overwrite=True) as tmp, open(tmp, "w") as log:
        proc = subprocess.run(cmd, cwd=prj_dir, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    report = parse_report(prj_dir)
    report["returncode"] = proc.returncode
    report["log"] = str(prj_dir / "vendor_build.log")
    return report


def vendor_csim(prj_dir, timeout: float = 3600) -> dict | None:
    """Vendor C-simulation of the project on its tb_data; None (with SKIP_REASON) without the tool."""
    return _run(prj_dir, {"csim": 1}, timeout)


def vendor_synth(prj_dir, timeout: float = 6 * 3600) -> dict | None:
    """Vendor C synthesis (HLS estimates: latency, II, LUT/FF/DSP/BRAM); None without the tool.

    A successful report joins the estimator's calibration set (record_calibration).
    """
    report = _run(prj_dir, {"synth": 1}, timeout)
    if report and report.get("returncode") == 0 and report.get("summary"):
        report["calibration_entry"] = record_calibration(prj_dir, report["summary"])
    return report


def record_calibration(prj_dir, summary: dict, path=None) -> str | None:
    """Add a csynth summary of a `ccstae hls` project to ccstae/firmware/calibration/vendor_designs.toml.

    The project's summary.json holds the estimator's feature counts for the same hardware; the
    next `bench/bench_estimate.py --refit` fits with the report included. Returns the entry name,
    or None (with a printed reason) when the project has no estimate to pair the report with.
    """
    import json

    from ccstae.firmware import calibration

    prj_dir = Path(prj_dir)
    s = prj_dir / "summary.json"
    est = json.loads(s.read_text()).get("estimate") if s.exists() else None
    if not est or "features" not in est:
        print(f"{prj_dir}: no estimate in summary.json; report not added to the calibration set")
        return None
    entry = calibration.add_report(est, summary, name=prj_dir.name, source=f"ccstae vendor synth {prj_dir}",
                                   path=path or calibration.VENDOR_FILE)
    return entry["name"]


def parse_report(prj_dir) -> dict:
    """hls4ml.report.parse_vivado_report on a project folder, quietly, plus a flat summary.

    Returns hls4ml's dict (CSynthesisReport, CSimResults, ... where present) with 'summary':
    the numbers a resource table needs, as numbers. Synthesis numbers are HLS estimates
    (LUTs run ~2x above Vivado synthesis; shared/STACK.md).
    """
    from hls4ml.report import parse_vivado_report

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        report = parse_vivado_report(str(prj_dir)) or {}
    report["messages"] = [line for line in quiet.getvalue().splitlines() if line.strip()]
    syn = report.get("CSynthesisReport")
    if syn:
        report["summary"] = summarize_csynth(syn)
    return report


def summarize_csynth(syn: dict) -> dict:
    def num(key):
        value = syn.get(key)
        try:
            return float(value) if "." in str(value) else int(value)
        except (TypeError, ValueError):
            return None

    out = {"kind": "HLS estimate", "target_clock_ns": num("TargetClockPeriod"),
           "estimated_clock_ns": num("EstimatedClockPeriod"), "latency_cycles": num("WorstLatency"),
           "interval_cycles": num("IntervalMax")}
    for res in ("LUT", "FF", "DSP", "BRAM_18K", "URAM"):
        out[res], out["available_" + res] = num(res), num("Available" + res)
    return out

