"""Resources and throughput of the detector-side front end (ccstae/firmware/frontend/), beside the encoder's.

    fe = estimate_frontend(geometry)                 # LUT/FF/DSP/BRAM18 of binning, line buffer, ROMs
    full = combine(fe, encoder_estimate)             # + the encoder (ccstae/firmware/estimate.py), II, parts
    rows = raw_rate_table(geometry, encoder_estimate)  # per detector: raw px/clock, keeps up raw / binned

Every number is an *estimate* (kind "estimate (front-end model)"), read off the C++ the way
ccstae/firmware/estimate.py reads hls4ml's templates:

* bin_frame, one word of PIXELS_PER_CLOCK counts per clock (PIPELINE II=1): per word GROUPS
  adder trees of PX_PER_GROUP counts, a horizontal accumulator per group when a bin spans
  several words, one adder per group into the line buffer, and the muxes that restart a bin.
  Adders cost one LUT per result bit (UltraScale carry chain). The line buffer is one binned row
  of partial sums (BIN_W x SUM_BITS bits) in GROUPS banks, SRL/LUTRAM or BRAM18 by size.
* crop_mask_lut, one binned pixel per clock: the mask ROM (ENC_H x ENC_W bits; none without a
  mask), the input LUT
  (LUT_DEPTH x CODE_BITS) and a saturating index compare. ROMs go to BRAM18 when deep (as the
  encoder's memories do); no DSP anywhere in the front end.
* Streams: the binned-word FIFO holds one binned row; the others are a few registers.
* A session's calibration (geometry "bad_pixels", "origin_shift"; both off by default, compiled out):
  a ROM of one bit per raw pixel, read one word per clock, gating the counts into the adders; and
  instead of crop_mask_lut a ping-pong buffer of the binned frame (store_binned, one word per clock)
  read through the shifted window (window_mask_lut, one encoder pixel per clock): two address adders
  and four bound compares, one more dataflow process, and one binned frame more latency.
* Throughput: the stages run concurrently (DATAFLOW) with the encoder, so a pattern takes the
  largest of RAW_H x RAW_W / PIXELS_PER_CLOCK clocks (reading the raw frame), BIN_H x BIN_W
  (crop + LUT, one binned pixel per clock) and the encoder's II.
"""
from __future__ import annotations

import math

from ccstae.firmware import estimate as E
from ccstae.firmware import fabric as F

KIND = "estimate (front-end model)"
# Control FSM, loop counters and stream handshakes of one dataflow process (the value the
# encoder's estimator used per layer before its refit).
PROCESS_OVERHEAD = {"LUT": 120, "FF": 150}

# How each camera's frame maps onto the deployable encoder: raw pixels per side at the frame
# rate of firmware/estimate.DETECTORS, and the counter width. The binning is chosen so that the
# binned frame is the encoder's detector-side size (32 x 32 for the 30 x 30 detector preset).
RAW_FORMATS = {
    # ARINA: a 192 x 192 sensor that reads out 96 x 96 (2 x 2 binned on chip) at its top rate,
    # 120 kHz (Dectris product sheet); 96 x 96 -> 3 x 3 binning -> 32 x 32. Counter width assumed 16.
    "arina": {"raw_pixels": 96, "count_bits": 16},
    # NCEM 4D Camera: 576 x 576 at 87 kHz (Ercius et al. 2020); electron counting, 16-bit sums assumed.
    "ncem_4d_camera": {"raw_pixels": 576, "count_bits": 16},
    "empad": {"raw_pixels": 128, "count_bits": 16},      # 128 x 128 (Tate et al. 2016), wide-range pixels
    "empad_g2": {"raw_pixels": 128, "count_bits": 16},
    "merlin_1bit": {"raw_pixels": 256, "count_bits": 1},  # Medipix3 256 x 256, 1-bit counters
    "merlin_12bit": {"raw_pixels": 256, "count_bits": 12},
}


def clog2(x: int) -> int:
    return max(0, math.ceil(math.log2(x))) if x > 1 else 0


def _adder(bits: int) -> dict:
    return {"LUT": bits, "FF": bits}


def estimate_frontend(geometry: dict, clock_period_ns: float = 5.0, constants: dict | None = None) -> dict:
    """Resources and cycles of the front end alone for a firmware/frontend.geometry() dict
    (pattern, binning, crop, pixels_per_clock, count_bits, lut_depth, lut_bits)."""
    c = dict(E.DEFAULTS, **(constants or {}))
    p, b, crop = int(geometry["pattern"]), int(geometry["binning"]), int(geometry["crop"])
    ppc, bits = int(geometry["pixels_per_clock"]), int(geometry["count_bits"])
    per_group = min(ppc, b)
    groups, words_per_bin = ppc // per_group, b // per_group
    sum_bits = bits + clog2(b * b)
    bin_w, enc = p // b, p // b - 2 * crop
    parts = []

    def add(name, lut=0, ff=0, bram=0, note=""):
        parts.append({"name": name, "LUT": int(round(lut)), "FF": int(round(ff)), "DSP": 0, "BRAM18": int(bram),
                      "note": note})

    # bin_frame: group sums, accumulators, restart muxes, pipeline registers.
    adders, tree_luts, levels = F.adder_tree_luts(per_group, bits, sum_bits)
    acc_adders = groups * (1 + (words_per_bin > 1))
    add("binning adders", lut=groups * tree_luts + acc_adders * sum_bits + groups * 2 * sum_bits / 2,
        ff=ppc * bits + groups * sum_bits * (levels + 2),
        note=f"{groups} x ({per_group}-count tree + {1 + (words_per_bin > 1)} accumulator(s)), {sum_bits}-bit sums")
    mem = F.memory_cost(bin_w // groups, sum_bits, c)
    add("line buffer", lut=groups * mem["LUT"], bram=groups * mem["BRAM18"],
        note=f"{bin_w} x {sum_bits} bits in {groups} bank(s), {mem['where']}")
    fifo = F.memory_cost(bin_w // groups, groups * sum_bits, c)
    add("binned-row FIFO", lut=fifo["LUT"], bram=fifo["BRAM18"],
        note=f"{bin_w // groups} x {groups * sum_bits} bits, {fifo['where']}")
    if geometry.get("bad_pixels"):
        rom = F.memory_cost(p * p // ppc, ppc, c)
        add("bad-pixel ROM + gates", lut=rom["LUT"] + ppc * bits, bram=rom["BRAM18"],
            note=f"{p * p // ppc:,} x {ppc} bits ({rom['where']}); one LUT per gated count bit")
    shifted = bool(geometry.get("origin_shift"))
    if shifted:
        frame = F.memory_cost(bin_w * bin_w // groups, sum_bits, c)
        add("binned frame (ping-pong)", lut=2 * groups * frame["LUT"], bram=2 * groups * frame["BRAM18"],
            note=f"2 x {bin_w} x {bin_w} x {sum_bits} bits in {groups} bank(s), {frame['where']}")
        add("window: shift word, address, bounds", lut=2 * 16 + 4 * 16 + 2 * 16, ff=2 * 16 + 2 * 16,
            note="(dy, dx) 16-bit; two address adders, four bound compares, the outside-reads-0 mux")
    # crop_mask_lut: word mux, counters and crop compares, saturating index, two ROMs.
    if geometry.get("masked", True):
        mask = F.memory_cost(enc * enc, 1, c)
        add("mask ROM", lut=mask["LUT"], bram=mask["BRAM18"], note=f"{enc} x {enc} bits, {mask['where']}")
    lut = F.memory_cost(int(geometry["lut_depth"]), int(geometry["lut_bits"]), c)
    add("input LUT ROM", lut=lut["LUT"], bram=lut["BRAM18"],
        note=f"{int(geometry['lut_depth']):,} x {geometry['lut_bits']} bits, {lut['where']}")
    add("crop, mask, saturate", lut=sum_bits * math.ceil(max(groups - 1, 0) / 3) + 2 * sum_bits + 4 * 16,
        ff=groups * sum_bits + 2 * 16 + int(geometry["lut_bits"]))
    n_proc = 3 + shifted
    add(f"dataflow control ({n_proc} processes)", lut=n_proc * PROCESS_OVERHEAD["LUT"], ff=n_proc * PROCESS_OVERHEAD["FF"])
    total = {r: sum(x[r] for x in parts) for r in E.RESOURCES}
    if shifted:
        cycles = {"read raw frame": p * p // ppc, "store binned frame": bin_w * bin_w // groups,
                  "window + LUT": enc * enc}
    else:
        cycles = {"read raw frame": p * p // ppc, "crop + LUT": bin_w * bin_w}
    # The window waits for the whole binned frame (the ping-pong buffer): its read is extra latency.
    extra_latency = enc * enc if shifted else 0
    return {"kind": KIND, "geometry": dict(geometry), "parts": parts, "total": total, "cycles": cycles,
            "ii_cycles": max(cycles.values()), "extra_latency_cycles": extra_latency,
            "clock_period_ns": float(clock_period_ns)}


def combine(frontend: dict, encoder: dict) -> dict:
    """Front end + encoder as one design: summed resources, the slowest stage's II, % of parts."""
    total = {r: frontend["total"][r] + (encoder["total"].get(r) or 0) for r in E.RESOURCES}
    ii = max(frontend["ii_cycles"], encoder["ii_cycles"])
    # Upper bound: the raw frame streams in while the encoder already works on its first rows.
    latency = frontend["cycles"]["read raw frame"] + frontend.get("extra_latency_cycles", 0) + encoder["latency_cycles"]
    return E.finish({"kind": f"{KIND} + {encoder['kind']}", "clock_period_ns": encoder["clock_period_ns"],
                     "total": total, "ii_cycles": int(ii), "latency_cycles": int(latency),
                     "frontend_ii_cycles": frontend["ii_cycles"], "encoder_ii_cycles": encoder["ii_cycles"]})


def pixels_per_clock_for(raw: int, binning: int, needed: float) -> int | None:
    """The fewest pixels per clock >= needed that the front end accepts for this raw width."""
    for ppc in range(max(1, math.ceil(needed - 1e-9)), raw + 1):
        if raw % ppc == 0 and (ppc % binning == 0 or binning % ppc == 0):
            return ppc
    return None


def detector_geometry(detector: str, run_geometry: dict, clock_mhz: float) -> dict | None:
    """The run's front end re-targeted at a camera: same binned size, crop, LUT and mask; the
    binning and pixels per clock that its raw frame and rate need. None if the raw size is not a
    multiple of the binned one."""
    fmt, det = RAW_FORMATS[detector], E.DETECTORS[detector]
    binned = run_geometry["pattern"] // run_geometry["binning"]
    raw = fmt["raw_pixels"]
    if raw % binned:
        return None
    b = raw // binned
    needed = det["frame_rate_hz"] * raw * raw / (clock_mhz * 1e6)
    ppc = pixels_per_clock_for(raw, b, needed)
    return {**run_geometry, "pattern": raw, "binning": b, "pixels_per_clock": ppc, "count_bits": fmt["count_bits"],
            "needed_pixels_per_clock": needed}


def raw_rate_table(run_geometry: dict, encoder: dict, detectors=tuple(RAW_FORMATS), part: str = "xcku115",
                   headroom: float = 0.7) -> list[dict]:
    """Per camera: raw pixels per clock needed, the front end built for it, and whether the design
    keeps up at the binned rate (encoder alone, one binned pixel per clock) and at the raw rate
    (front end + encoder), with its resources as a fraction of `part`."""
    clock_mhz = 1e3 / encoder["clock_period_ns"]
    rows = []
    for d in detectors:
        det = E.DETECTORS[d]
        g = detector_geometry(d, run_geometry, clock_mhz)
        row = {"detector": det["name"], "key": d, "frame_rate_hz": det["frame_rate_hz"],
               "confidence": det.get("confidence"), "raw_pixels": RAW_FORMATS[d]["raw_pixels"],
               "keeps_up_binned": E.keeps_up(encoder, det)}
        if g is None or g["pixels_per_clock"] is None:
            row.update(note="raw size is not a multiple of the binned size: no front end mapping")
            rows.append(row)
            continue
        full = combine(estimate_frontend(g, encoder["clock_period_ns"]), encoder)
        frac = full["parts"][part]
        row.update(binning=g["binning"], raw_pixels_per_s=det["frame_rate_hz"] * g["pattern"] ** 2,
                   needed_pixels_per_clock=g["needed_pixels_per_clock"], pixels_per_clock=g["pixels_per_clock"],
                   input_word_bits=g["pixels_per_clock"] * g["count_bits"], ii_cycles=full["ii_cycles"],
                   patterns_per_s=full["patterns_per_s"], keeps_up_raw=E.keeps_up(full, det),
                   total=full["total"], part=part, part_fraction=frac,
                   fits=all((f or 0) <= headroom for f in frac.values()), kind=full["kind"])
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown: one row per camera."""
    lines = ["| camera | frame rate | raw px | binning | raw px/clock needed | px/clock built | input word bits | II (cycles) | "
             "patterns/s | keeps up binned | keeps up raw | LUT | FF | BRAM18 | DSP | max % of part |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "total" not in r:
            lines.append(f"| {r['detector']} | {r['frame_rate_hz']:,} Hz | {r['raw_pixels']} | - | - | - | - | - | - | "
                         f"{'yes' if r['keeps_up_binned'] else 'no'} | - | - | - | - | - | {r['note']} |")
            continue
        t, frac = r["total"], r["part_fraction"]
        worst = max(frac, key=lambda k: frac[k] or 0)
        lines.append(
            f"| {r['detector']} | {r['frame_rate_hz']:,} Hz | {r['raw_pixels']}x{r['raw_pixels']} | {r['binning']}x{r['binning']} "
            f"| {r['needed_pixels_per_clock']:.2f} | {r['pixels_per_clock']} | {r['input_word_bits']:,} | {r['ii_cycles']:,} | "
            f"{r['patterns_per_s']:,.0f} | {'yes' if r['keeps_up_binned'] else 'no'} | "
            f"{'yes' if r['keeps_up_raw'] else 'no'} | {t['LUT']:,} | {t['FF']:,} | {t['BRAM18']:,} | {t['DSP']:,} "
            f"| {100 * frac[worst]:.1f} % {worst} of {r['part']} |")
    return "\n".join(lines)


def format_frontend(fe: dict) -> str:
    """Markdown: the front end's parts for one geometry."""
    g = fe["geometry"]
    lines = [f"Front end {g['pattern']}x{g['pattern']} counts ({g['count_bits']} bits, {g['pixels_per_clock']} px/clock) "
             f"-> {g['binning']}x{g['binning']} bins -> crop {g['crop']} -> mask -> LUT: {fe['kind']}", "",
             "| part | LUT | FF | BRAM18 | how |", "| --- | ---: | ---: | ---: | --- |"]
    for x in fe["parts"]:
        lines.append(f"| {x['name']} | {x['LUT']:,} | {x['FF']:,} | {x['BRAM18']} | {x['note']} |")
    t = fe["total"]
    lines.append(f"| **total** | {t['LUT']:,} | {t['FF']:,} | {t['BRAM18']} | cycles per pattern: "
                 + ", ".join(f"{k} {v:,}" for k, v in fe["cycles"].items()) + " |")
    return "\n".join(lines)


def summary(geometry: dict, encoder: dict) -> dict:
    """What `make hls` records in summary.json: the front end's parts, front end + encoder, and
    the per-camera raw-rate table (all estimates)."""
    fe = estimate_frontend(geometry, encoder["clock_period_ns"])
    full = combine(fe, encoder)
    return {"kind": KIND, "frontend": fe, "encoder_total": encoder["total"], "combined_total": full["total"],
            "combined_ii_cycles": full["ii_cycles"], "combined_patterns_per_s": full["patterns_per_s"],
            "combined_parts": full["parts"], "detectors": raw_rate_table(geometry, encoder)}
