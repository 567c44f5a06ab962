"""What an operator, a memory or a pipeline costs on the FPGA fabric: the primitives the resource
estimates are built from, the widths of hls4ml's fixed-point types they take, and the features a
layer's count accumulates.

ccstae/firmware/hardware.py counts hls4ml's layers with them; the front end's and the centroid
core's estimates (ccstae/firmware/frontend_estimate.py, centroid_estimate.py) count their own
hand-written C++ with the same ones, so one calibration covers all three.
"""
from __future__ import annotations

import math

import numpy as np

# Combinational delays in ns HLS plans with, as Vivado HLS 2020.1 schedule reports list them for
# these parts (xc7z020-1; UltraScale+ -2): a 16-20 bit adder with its net delay, a DSP48 multiply,
# a block-RAM read. Set by hand from typical reports, not fitted.
DELAYS_NS = {"7series": {"add": 2.4, "dsp": 3.4, "bram": 2.5},
             "ultrascale": {"add": 1.1, "dsp": 2.1, "bram": 1.6}}


# ----------------------------------------------------------------------------- hls4ml's types

def type_width(precision) -> int:
    """Bits of an hls4ml fixed-point type (16 when it does not say)."""
    return int(getattr(precision, "width", 16))


def var_width(var) -> int:
    """Bits of an hls4ml variable's type."""
    return type_width(var.type.precision) if var is not None else 16


def frac_bits(precision) -> int:
    """Fractional bits of an hls4ml fixed-point type."""
    w, i = getattr(precision, "width", 16), getattr(precision, "integer", 6)
    return int(w) - int(i)


def fold_weights(precision, data: np.ndarray) -> np.ndarray:
    """Weights as the hardware holds them: rounded onto the weight type's LSB grid.

    Float weights that quantize to zero are zero in the firmware too (and free).
    """
    integer = getattr(precision, "integer", None)
    width = getattr(precision, "width", None)
    if integer is None or width is None or integer >= width:
        return np.asarray(data, np.float64)
    lsb = 2.0 ** (int(integer) - int(width))
    return np.round(np.asarray(data, np.float64) / lsb) * lsb


def add_features(d: dict, **features) -> None:
    """Add to a layer count's fabric features (estimate.py weighs them with the fitted coefficients)."""
    for k, v in features.items():
        d["features"][k] = d["features"].get(k, 0.0) + float(v)


# ----------------------------------------------------------------------------- primitives

def weight_bits(precision, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(non-zero bits, significant span in bits) of each weight's magnitude on its LSB grid.

    A constant with one non-zero bit is a wire (shift), with two a single adder; HLS also narrows
    a constant multiplier to the span between the constant's highest and lowest set bit.
    """
    lsb = 2.0 ** (int(getattr(precision, "integer", 0)) - int(getattr(precision, "width", 0))) \
        if getattr(precision, "width", None) is not None else 2.0 ** -10
    q = np.round(np.abs(w) / lsb).astype(np.int64)
    ones = np.zeros(q.shape, np.int64)
    span = np.zeros(q.shape, np.int64)
    low = np.full(q.shape, -1, np.int64)
    for b in range(int(q.max()).bit_length() if q.size else 0):
        bit = (q >> b) & 1
        ones += bit
        low = np.where((low < 0) & (bit == 1), b, low)
        span = np.where(bit == 1, b - low + 1, span)
    return ones, span


def csd_digits(q: np.ndarray) -> np.ndarray:
    """Non-zero digits of each integer's canonical signed-digit form (e.g. 7 = 8 - 1: two digits):
    the adders a shift-and-add constant multiplier needs, plus one."""
    q = np.abs(np.asarray(q, np.int64))
    digits = np.zeros(q.shape, np.int64)
    while np.any(q):
        odd = (q & 1) == 1
        # a run of ones ...0111 becomes +1000 -1: take -1 when the next bit is also one
        step = np.where(odd, np.where((q & 3) == 3, -1, 1), 0)
        digits += odd
        q = (q - step) >> 1
    return digits


def bram18(depth: int, width: int) -> int:
    """18 Kb block RAMs for a depth x width memory: the cheapest of the 18K aspect ratios (UG573)."""
    if depth <= 0 or width <= 0:
        return 0
    shapes = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in shapes)


def memory_cost(depth: int, width: int, c: dict) -> dict:
    """BRAM18 when deep and big enough, else SRL32/LUTRAM (one LUT holds 32 bits of a shift
    register or 64 bits of a distributed RAM column, SRLC32E/RAM64X1D)."""
    if depth > c["srl_max_depth"] and depth * width >= c["bram_min_bits"]:
        return {"BRAM18": bram18(depth, width), "LUT": 0, "where": "BRAM18"}
    return {"BRAM18": 0, "LUT": width * math.ceil(depth / 32), "where": "SRL/LUTRAM"}


def adder_tree_luts(n_terms: int, product_width: int, accum_width: int) -> tuple[int, int, int]:
    """(adders, result bits, levels) of a balanced tree summing n_terms values.

    Level l adds two (product_width + l - 1)-bit numbers into product_width + l bits, capped at
    the accumulator width (Vivado trims the bits that cannot change): one LUT per result bit.
    """
    adders = luts = levels = 0
    n = n_terms
    while n > 1:
        levels += 1
        pairs = n // 2
        adders += pairs
        luts += pairs * min(accum_width, product_width + levels)
        n -= pairs
    return adders, luts, levels


def tree_level_bits(n_terms: int, product_width: int, accum_width: int) -> list[int]:
    """Bits alive after each level of the adder tree (level 0: the products themselves)."""
    out, n, level = [n_terms * min(accum_width, product_width)], n_terms, 0
    while n > 1:
        level += 1
        n -= n // 2
        out.append(n * min(accum_width, product_width + level))
    return out


def pipeline(c: dict, family: str, period_ns: float, first_ns: float, levels: int) -> tuple[int, list[int]]:
    """(cycles, register cut levels) of a product (first_ns) followed by `levels` adder levels.

    HLS fills each clock period (less its uncertainty) with operations and registers where the
    next one would not fit: a 10 ns clock holds about twice the logic of a 5 ns one, so the same
    layer has fewer pipeline stages and registers at a slower clock.
    """
    t_add = DELAYS_NS[family]["add"]
    budget = period_ns * (1.0 - c["clock_uncertainty"])
    cuts, t = [], first_ns
    if first_ns > budget:                          # a DSP product longer than a cycle: its own stage(s)
        cuts.append(0)
        t = first_ns % budget
    for level in range(1, levels + 1):
        if t + t_add > budget:
            cuts.append(level - 1)
            t = 0.0
        t += t_add
    return len(cuts) + 1, cuts
