"""Resources and throughput of the centroid core (ccstae/firmware/centroid/), beside the encoder's.

    est = estimate_core(core, clock_period_ns=5.0)   # LUT/FF/DSP/BRAM18 per part, cycles, II, patterns/s
    rows = detector_rows(est, {"pattern": 64, "binning": 1}, ["arina", ...])   # keeps up, per camera
    text = summary_line(est)

A structural count, not calibrated against synthesis: no synthesis report of this core, or of a
comparable centroid design, is in ccstae/firmware/calibration/designs.toml. It reads the C++ the way
ccstae/firmware/frontend_estimate.py reads the front end, one pixel per clock:

* find_peaks: the frame buffer (SIZE^2 x SUM_BITS bits, BRAM18, read back for the leaving row and
  by measure_disks), the sector ROM (SIZE^2 x log2(K + 1) bits), a line of column sums (LUTRAM),
  two adders each for the column and the box sum, and per disk a best-sum register and its
  window centre behind one comparator and a K-way mux.
* measure_disks: per disk a pipelined loop over the window's N_OFFSETS pixels (offset ROM, address
  adders and bounds compares, eight accumulators, two small products pixel x offset in fabric),
  then six small products, three subtractions and two divides W_SHIFTED / W_DEN. The divides sit
  outside a pipelined loop, so HLS builds sequential dividers (one quotient bit a clock), each a
  (W_DEN + 1)-bit subtractor and its shift registers; the clamps and the positions after them.
* fit_lattice: six products PINV x position a clock (DSP48E2, 27 x 18 each, two where an operand is
  wider), six W_ACC accumulators, six roundings, the output word.
* Control: 3 functions at the front end's per-process overhead.

Adders cost one LUT and one register per result bit (UltraScale carry chains, as the front end's
count); a fabric product a x b bits about a b / 2 LUTs. The top has no DATAFLOW: the stages run one
after another on one frame buffer, so the interval between patterns is their summed cycles.
ERROR_BARS are a judgement, not a fit: the encoder's fitted counts miss by about a third
(leave-one-out, firmware/calibration/fit.json) and these are not fitted; the cycle counts hang on
pipeline depths and the divider's latency, which HLS chooses.
"""
from __future__ import annotations

import math

from ccstae.firmware import estimate as E
from ccstae.firmware import fabric as F
from ccstae.firmware import frontend_estimate as FE
from ccstae.firmware.centroid import CoreParams, clog2

KIND = "estimate (centroid core, structural count, not calibrated against synthesis)"
ERROR_BARS = {"LUT": 0.5, "FF": 0.5, "DSP": 0.5, "BRAM18": 0.25, "latency_cycles": 0.15, "ii_cycles": 0.15}
DETECTORS = ("ncem_4d_camera", "arina", "empad_g2", "merlin_1bit")  # [sweep] detectors of configs/default.toml
# Pipeline depths in cycles (not fitted): the find_peaks loop (BRAM read, two adders, compare), the
# window loop (ROM and BRAM reads, product, accumulate), a divider's cycles beyond one per quotient
# bit, the epilogue's products and the clamp and position adders, the fit (DSP product, accumulate,
# round, write).
DEPTH = {"find_peaks": 4, "window": 5, "divider_extra": 3, "epilogue": 3, "fit": 6}


def _product(a: int, b: int) -> dict:
    """One a x b bit product: in DSP48E2s (27 x 18) when both operands are wider than
    E.DEFAULTS's DSP threshold, else in fabric."""
    if min(a, b) >= E.DEFAULTS["dsp_min_data_bits"]:
        return {"DSP": min(math.ceil(a / 27) * math.ceil(b / 18), math.ceil(b / 27) * math.ceil(a / 18)), "LUT": 0}
    return {"DSP": 0, "LUT": math.ceil(a * b / 2)}


def estimate_core(core: CoreParams, clock_period_ns: float = 5.0) -> dict:
    """Resources and cycles of one core (CoreParams: its sizes and widths)."""
    c, w = E.DEFAULTS, core.widths()
    size, k = core.size, len(core.disks)
    off = core.offsets()
    n_off = len(off)
    coord = clog2(size) + 2  # a window coordinate with its sign and overhang
    w_col = core.sum_bits + clog2(core.box + 1)
    d_bits = clog2(core.reach + 1) + 1  # a signed window offset
    blocks = []

    def add(name, lut=0, ff=0, dsp=0, bram=0, note=""):
        blocks.append({"name": name, "LUT": int(round(lut)), "FF": int(round(ff)), "DSP": int(dsp),
                      "BRAM18": int(bram), "note": note})

    frame = F.memory_cost(size * size, core.sum_bits, c)
    add("frame buffer", lut=frame["LUT"], bram=frame["BRAM18"],
        note=f"{size * size:,} x {core.sum_bits} bits, {frame['where']}")
    sectors = F.memory_cost(size * size, clog2(k + 1), c)
    add("sector ROM", lut=sectors["LUT"], bram=sectors["BRAM18"],
        note=f"{size * size:,} x {clog2(k + 1)} bits, {sectors['where']}")
    line = F.memory_cost(size, w_col, c)
    add("box sums", lut=line["LUT"] + 2 * w_col + 2 * w["box"] + 4 * coord,
        ff=2 * core.sum_bits + w_col + w["box"] + 4 * coord,
        note=f"a line of {size} column sums ({line['where']}), {w['box']}-bit box sums")
    add("peak tracking", lut=w["box"] * (1 + math.ceil(k / 4)) + 2 * k, ff=k * (w["box"] + 1 + 2 * clog2(size)),
        note=f"{k} best sums and window centres, one compare and a {k}-way mux")
    rom = F.memory_cost(n_off, 2 * d_bits + 2, c)
    small = _product(core.sum_bits, d_bits)
    acc_bits = w["s"] + 2 * w["sx"] + w["ni"] + 2 * w["xi"] + w["b"] + w["nb"]
    add("window sums", lut=rom["LUT"] + 2 * small["LUT"] + acc_bits + 6 * coord, ff=acc_bits + 2 * core.sum_bits + 4 * coord,
        dsp=2 * small["DSP"], bram=rom["BRAM18"],
        note=f"{n_off} offsets ({rom['where']}), 8 accumulators, 2 products {core.sum_bits} x {d_bits}")
    epilogue = [_product(w["nb"], w["s"]), _product(w["b"], w["ni"]), *2 * [_product(w["nb"], w["sx"]),
                                                                           _product(w["b"], w["xi"])]]
    div_lut, div_ff = 2 * (w["den"] + 1) + w["shifted"], 2 * w["shifted"] + 2 * w["den"] + 8
    add("centroid divides", lut=sum(p["LUT"] for p in epilogue) + w["den"] + 2 * w["num"] + 2 * div_lut
        + 4 * w["shifted"] + 4 * w["pos"], ff=w["den"] + 2 * w["num"] + 2 * div_ff + 2 * w["off"],
        dsp=sum(p["DSP"] for p in epilogue),
        note=f"6 products, 2 sequential {w['shifted']}/{w['den']}-bit divides, clamps, positions")
    store = F.memory_cost(k, w["pos"], c)
    fit = _product(w["pinv"], w["pos"])
    pinv = F.memory_cost(k, w["pinv"], c)
    add("lattice fit", lut=2 * store["LUT"] + 3 * pinv["LUT"] + 6 * fit["LUT"] + 6 * w["acc"] + 6 * w["out"],
        ff=6 * w["acc"] + 2 * w["pos"] + 3 * w["pinv"] + 6 * w["out"], dsp=6 * fit["DSP"],
        bram=2 * store["BRAM18"] + 3 * pinv["BRAM18"],
        note=f"6 products {w['pinv']} x {w['pos']} bits, 6 {w['acc']}-bit accumulators, {6 * w['out']}-bit output")
    add("control (3 functions)", lut=3 * FE.PROCESS_OVERHEAD["LUT"], ff=3 * FE.PROCESS_OVERHEAD["FF"])
    total = {r: sum(b[r] for b in blocks) for r in E.RESOURCES}
    per_disk = n_off + DEPTH["window"] + DEPTH["epilogue"] + w["shifted"] + DEPTH["divider_extra"]
    cycles = {"find_peaks": size * size + DEPTH["find_peaks"], "measure_disks": k * per_disk,
              "fit_lattice": k + DEPTH["fit"]}
    latency = sum(cycles.values())
    est = {"kind": KIND, "clock_period_ns": float(clock_period_ns), "blocks": blocks, "total": total,
           "cycles": cycles, "latency_cycles": latency, "ii_cycles": latency, "error_bars": dict(ERROR_BARS)}
    return E.finish(est)


def detector_rows(est: dict, stream: dict, detectors=DETECTORS) -> list[dict]:
    """Per camera: does the core keep up fed one binned pixel a clock (binned), and from the raw
    frame through the front end's binning at the pixels per clock the camera needs (raw: the frame
    comes in at the slower of the raw read and one binned pixel a clock, then measure_disks and
    fit_lattice run while the input waits)? stream: {"pattern", "binning"} of the run."""
    clock_mhz = 1e3 / est["clock_period_ns"]
    rest = est["cycles"]["measure_disks"] + est["cycles"]["fit_lattice"]
    rows = []
    for d in detectors:
        det = E.DETECTORS[d]
        row = {"detector": det["name"], "key": d, "frame_rate_hz": det["frame_rate_hz"],
               "keeps_up_binned": E.keeps_up(est, det)}
        g = FE.detector_geometry(d, stream, clock_mhz)
        if g is None or g["pixels_per_clock"] is None:
            row["note"] = "raw size is not a multiple of the binned size: no front end mapping"
        else:
            read = g["pattern"] ** 2 // g["pixels_per_clock"]
            ii = max(read, est["cycles"]["find_peaks"]) + rest
            rate = 1e9 / (ii * est["clock_period_ns"])
            row.update(raw_pixels=g["pattern"], binning=g["binning"], pixels_per_clock=g["pixels_per_clock"],
                       ii_cycles=ii, patterns_per_s=rate, keeps_up_raw=rate >= det["frame_rate_hz"])
        rows.append(row)
    return rows


def summary(core: CoreParams, stream: dict, clock_period_ns: float, part: str, detectors=DETECTORS) -> dict:
    """What `make hls` records: the blocks, totals, cycles, share of the part and the camera rows."""
    est = estimate_core(core, clock_period_ns)
    key = E.part_key(part)
    return {**{k: est[k] for k in ("kind", "clock_period_ns", "blocks", "total", "cycles", "latency_cycles",
                                   "ii_cycles", "latency_us", "patterns_per_s", "error_bars")},
            "part": part, "part_fraction": est["parts"].get(key) if key else None,
            "summary": summary_line(est), "detectors": detector_rows(est, stream, detectors)}


def summary_line(est: dict) -> str:
    """'3,456 LUT +- 50 %, ...; 5,900 cycles II +- 15 % ...; 33,898 patterns/s [kind]'."""
    return (", ".join(E.with_error(est, q) for q in E.RESOURCES) +
            f"; {E.with_error(est, 'ii_cycles')}, {E.with_error(est, 'latency_cycles')} "
            f"({est['latency_us']:.2f} us) at {est['clock_mhz']:.0f} MHz; "
            f"{est['patterns_per_s']:,.0f} patterns/s [{est['kind']}]")


def lines(est: dict, encoder_total: dict | None = None) -> list[str]:
    """make hls's lines: the core's resources beside the encoder's and each camera's keep-up."""
    share = ""
    if encoder_total and encoder_total.get("LUT"):
        share = f" ({100 * est['total']['LUT'] / encoder_total['LUT']:.1f} % of the encoder's LUTs)"
    out = [f"centroid core resources{share}: {est['summary']}",
           "centroid core per camera (binned: one binned px/clock; raw: through the front end's binning):"]
    for r in est["detectors"]:
        raw = (f"raw {r['raw_pixels']}x{r['raw_pixels']} b{r['binning']} at {r['pixels_per_clock']} px/clock: "
               f"{r['patterns_per_s']:,.0f} patterns/s, {'yes' if r['keeps_up_raw'] else 'NO'}"
               if "keeps_up_raw" in r else r["note"])
        out.append(f"  {r['detector']:<24} {r['frame_rate_hz']:>8,} Hz: binned {'yes' if r['keeps_up_binned'] else 'NO'}, "
                   + raw)
    return out
