"""The hardware hls4ml 1.3 writes for each layer, counted from the converted graph.

ccstae/firmware/estimate.py calls count_layer() per layer and turns the counts into resources, latency
and II. What is counted (read from the nnet_utils templates):

* Products. Latency strategy: weights are compile-time constants (function_instantiate), so a
  zero weight costs nothing, a power of two is a wire, a weight of at most two signed digits
  (canonical signed-digit form) is shift-and-add, and the rest go to DSP48s when the data
  operand is wider than 10 bits and the weight type wider than 4 bits (narrower: shift-add in
  fabric). Under an ALLOCATION limit (reuse > 1) HLS also rewrites three-digit constants as
  shift-add, which sets the II of pruned layers. Resource strategy: weights in ROM, every
  product real. Product width: the accumulator's integer range cuts the bits that wrap away.
* Adder trees: each output sums its non-zero products and bias, level l being (product width
  + l) bits wide up to the accumulator width. ALLOCATION shares multipliers only; the Latency
  strategy keeps every adder of the unrolled accumulation.
* Pipeline: HLS fills each clock period (less 12.5 % uncertainty) with operator delays (per
  family, DELAYS_NS) and registers where the next one would not fit; the registers are the live
  bits at those cuts. A slower clock means fewer stages, fewer registers, fewer cycles.
* Reuse R > 1: an R:1 operand mux per shared multiplier, partial sums in registers; stream
  kernels keep the weights in registers; Resource kernels pay pipeline fill per pixel.
* io_stream: one pixel per R clocks through line buffers (ap_shift_reg per row and channel) and
  a FIFO between layers as deep as the feature map, one FIFO per array element under Vivado HLS.
* Memories go to SRL/LUTRAM up to 64 deep, else to the cheapest BRAM18 aspect ratio.

Counts land in d["features"] (lut_mult, lut_add, lut_logic, lut_reuse, process; ff_pipe, ff_io,
ff_reuse), which estimate.py weighs with the fitted coefficients, and in the layer dict (DSP,
BRAM18, multipliers, depth_cycles, ii_cycles).
"""
from __future__ import annotations

import math

import numpy as np

# Combinational delays in ns HLS plans with, as Vivado HLS 2020.1 schedule reports list them for
# these parts (xc7z020-1; UltraScale+ -2): a 16-20 bit adder with its net delay, a DSP48 multiply,
# a block-RAM read. Set by hand from typical reports, not fitted.
DELAYS_NS = {"7series": {"add": 2.4, "dsp": 3.4, "bram": 2.5},
             "ultrascale": {"add": 1.1, "dsp": 2.1, "bram": 1.6}}

MULT_CLASSES = {"Conv1D", "Conv2D", "Conv2DBatchnorm", "Dense", "PointwiseConv1D", "PointwiseConv2D"}
ELEMENTWISE_CLASSES = {"Activation", "ReLU", "LeakyReLU", "ParametrizedActivation", "PReLU",
                       "HardActivation", "BatchNormalization", "ApplyAlpha"}


# ----------------------------------------------------------------------------- helpers

def _width(precision) -> int:
    return int(getattr(precision, "width", 16))


def _var_width(var) -> int:
    return _width(var.type.precision) if var is not None else 16


def _frac(precision) -> int:
    w, i = getattr(precision, "width", 16), getattr(precision, "integer", 6)
    return int(w) - int(i)


def _fold(precision, data: np.ndarray) -> np.ndarray:
    """Weights as the hardware holds them: rounded onto the weight type's LSB grid.

    Float weights that quantize to zero are zero in the firmware too (and free).
    """
    integer = getattr(precision, "integer", None)
    width = getattr(precision, "width", None)
    if integer is None or width is None or integer >= width:
        return np.asarray(data, np.float64)
    lsb = 2.0 ** (int(integer) - int(width))
    return np.round(np.asarray(data, np.float64) / lsb) * lsb


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


def _layer_dict(layer, cls: str) -> dict:
    return {"name": layer.name, "class": cls, "multiplications": 0, "multipliers": 0,
            "dsp_multipliers": 0, "lut_multipliers": 0, "adders": 0, "LUT": 0, "FF": 0, "DSP": 0,
            "BRAM18": 0, "depth_cycles": 0, "ii_cycles": 0, "features": {}, "notes": []}


def _add(d: dict, **features) -> None:
    for k, v in features.items():
        d["features"][k] = d["features"].get(k, 0.0) + float(v)


# ----------------------------------------------------------------------------- per layer

def _mult_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    cls, io_stream, family, period = d["class"], ctx["io_stream"], ctx["family"], ctx["period"]
    rf = int(layer.get_attr("reuse_factor", 1) or 1)
    strategy = str(layer.get_attr("strategy", "latency")).lower()
    wvar = layer.weights["weight"]
    wprec = wvar.type.precision
    w = _fold(wprec, wvar.data)
    in_prec = layer.get_input_variable().type.precision
    wa = _width(in_prec)                                  # streamed operand
    wb = _width(wprec)                                    # constant weight
    accum = layer.get_attr("accum_t")
    acc_prec = accum.precision if accum is not None else layer.get_output_variable().type.precision
    acc_w = _width(acc_prec)
    n_out = int(layer.get_attr("n_filt", 0) or layer.get_attr("n_out", 0) or w.shape[-1])
    if w.shape[-1] != n_out and w.shape[0] == n_out:
        w = np.moveaxis(w, 0, -1)  # the Resource strategy stores weights transposed (outputs first)
    cols = w.reshape(-1, n_out)
    nonzero = cols != 0
    ones, span = weight_bits(wprec, cols)
    lsb = 2.0 ** (int(getattr(wprec, "integer", 0)) - int(getattr(wprec, "width", 0)))
    digits = csd_digits(np.round(np.abs(cols) / lsb).astype(np.int64))   # signed digits: adders + 1
    # Effective product width: the product's bits above the accumulator's integer range wrap away,
    # so HLS narrows the multiplier to acc integer bits + the product's fractional bits.
    frac = _frac(in_prec) + _frac(wprec)
    acc_int = acc_w - _frac(acc_prec)
    folded = strategy != "resource"                       # Resource: weights in ROM, every product real
    if folded:
        shift = nonzero & (digits == 1)                   # +-2^k: a wire
        # Few signed digits: shift-and-add, for wide weight types (narrow quantized weights on
        # wide data stay on DSPs in the published QKeras designs).
        few = (digits <= c["lut_max_weight_digits"]) & (wb >= c["csd_min_weight_bits"])
        fabric = nonzero & (digits >= 2) & (few | (wa < c["dsp_min_data_bits"]) | (wb < c["dsp_min_weight_bits"]))
        dsp = nonzero & ~shift & ~fabric
    else:
        shift = np.zeros_like(nonzero)
        big = wa >= c["dsp_min_data_bits"] and wb >= c["dsp_min_weight_bits"]
        dsp = np.full_like(nonzero, big)
        fabric = np.full_like(nonzero, not big)
    eff_w = np.minimum(wa + np.where(folded, span, wb), acc_int + frac)
    pw = int(min(acc_w + max(0, frac - _frac(acc_prec)), wa + wb))   # product bits the adder tree sees
    d["multiplications"] = int(nonzero.sum())
    d["shift_only"] = int(shift.sum())
    d["zero_weights"] = int((~nonzero).sum())
    d["reuse_factor"] = rf
    d["strategy"] = strategy
    is_conv = cls.startswith("Conv") or cls.startswith("Pointwise")
    copies = 1
    if is_conv and not io_stream:
        out_px = int(np.prod(layer.get_output_variable().shape[:-1]))
        partitions = int(layer.get_attr("n_partitions", out_px) or out_px)
        copies = max(1, out_px // partitions)
    n_dsp, n_fab = int(dsp.sum()), int(fabric.sum())
    d["dsp_multipliers"] = d["DSP"] = math.ceil(n_dsp / rf) * copies      # ALLOCATION limit
    d["lut_multipliers"] = math.ceil(n_fab / rf) * copies
    d["multipliers"] = d["dsp_multipliers"] + d["lut_multipliers"]
    # Shift-and-add: x * (2^a +- 2^b ...) adds shifted copies of x, one adder of about the data
    # width per extra signed digit; a product of a non-constant weight (Resource) ~ wa*wb/2 LUTs.
    if folded:
        lut_mult = float(((digits - 1) * (wa + 1))[fabric].sum())
    else:
        lut_mult = n_fab * wa * wb / 2.0
    d["fabric_mult_bits"] = lut_mult * copies / rf
    # What the DSP products would cost in fabric: used when the part runs out of DSPs.
    d["dsp_as_fabric"] = float(((np.maximum(ones, 2) - 1) * (wa + 1))[dsp].sum()) * copies / rf if folded \
        else n_dsp * wa * wb / 2.0 * copies / rf
    # Adder trees: per output column, its non-zero terms (+ the bias when it is non-zero).
    bias = layer.weights.get("bias")
    bias_nz = (_fold(bias.type.precision, bias.data) != 0) if bias is not None else np.zeros(n_out, bool)
    terms = nonzero.sum(axis=0) + bias_nz.reshape(-1)[:n_out]
    adders = add_bits = max_levels = 0
    for t in terms:
        a, bits, lev = adder_tree_luts(int(t), pw, acc_w)
        adders, add_bits, max_levels = adders + a, add_bits + bits, max(max_levels, lev)
    d["adders"] = math.ceil(adders / (rf if strategy == "resource" else 1)) * copies
    # Pipeline: product (DSP or a shift-add level) then the adder tree, cut where the clock says.
    first = DELAYS_NS[family]["dsp"] if n_dsp else DELAYS_NS[family]["add"]
    cycles, cuts = pipeline(c, family, period, first, max_levels)
    mean_terms = max(1, int(round(float(terms.mean())))) if terms.size else 1
    level_bits = tree_level_bits(mean_terms, pw, acc_w)
    cut_bits = sum(level_bits[min(k, len(level_bits) - 1)] for k in cuts) * n_out
    # ALLOCATION limits multipliers only: with the Latency strategy every adder of the unrolled
    # accumulation stays (the published reuse-16 designs keep their reuse-1 adder LUTs); the
    # Resource strategy shares them too.
    share = rf if strategy == "resource" else 1
    _add(d, lut_mult=lut_mult * copies / rf, lut_add=add_bits * copies / share,
         ff_pipe=(cut_bits * copies / share) + n_out * acc_w, ff_io=0)
    d["pipeline_cycles"] = cycles
    if rf > 1:
        # Shared multipliers: an R:1 mux on the data operand and on the weight (a LUT6 is a 4:1
        # mux per bit; Resource reads the weight from its ROM instead, but routes each product
        # to one of the accumulators), and the partial sums kept in registers between passes.
        shared = d["multipliers"]
        _add(d, lut_reuse=shared * (wa + (wb if folded else acc_w)) * math.ceil((rf - 1) / 3),
             ff_pipe=shared * (wa + wb + acc_w))
        if io_stream and folded:
            # The stream kernels index the weight array with the reuse counter: HLS keeps the
            # non-zero weights in registers (csynth of the published reuse-16 CNN: ~16 FF per weight).
            _add(d, ff_reuse=int(nonzero.sum()) * wb)
    if strategy == "resource":
        # Weights in ROMs of depth R (nnet_dense_resource.h): block_factor words per address.
        mem = memory_cost(rf, math.ceil(w.size / rf) * wb, c)
        d["BRAM18"] += mem["BRAM18"]
        _add(d, lut_logic=mem["LUT"])
        d["notes"].append(f"weights in {mem['where']}")
    d["notes"].append(f"{n_dsp} products on DSP48, {n_fab} shift-add in LUTs, {int(shift.sum())} shifts")
    inp = layer.get_input_variable().shape
    if is_conv:
        fh = int(layer.get_attr("filt_height", 1) or 1)
        fw = int(layer.get_attr("filt_width", 1) or 1)
        n_chan = int(layer.get_attr("n_chan", inp[-1]))
        in_w = int(layer.get_attr("in_width", inp[-2] if len(inp) > 2 else inp[0]))
        in_h = int(layer.get_attr("in_height", inp[0] if len(inp) > 2 else 1))
        pixels = in_h * in_w
        if io_stream:
            # conv_2d_buffer_cl: one pixel per II=R loop iteration over every input pixel; the
            # last pixel's kernel (R cycles) and the pipeline follow the frame.
            per_pixel = rf
            if strategy == "resource":
                # nnet_dense_resource.h: the reuse loop is pipelined inside one pixel only, so
                # every pixel also pays its fill and drain: loop entry/exit (2), the weight ROM
                # read (2), the product and accumulation stages, the input/output transfer (2).
                per_pixel += 2 + 2 + cycles + 1 + 2
            d["ii_cycles"] = d["stream_cycles"] = pixels * per_pixel + c["frame_overhead_cycles"]
            d["depth_cycles"] = cycles + per_pixel
            if fh > 1:
                mem = memory_cost(in_w, wa, c)            # one ap_shift_reg per (row, channel)
                n_buf = (fh - 1) * n_chan
                d["BRAM18"] += n_buf * mem["BRAM18"]
                _add(d, lut_logic=n_buf * mem["LUT"])
                d["line_buffer"] = {"rows": fh - 1, "width_px": in_w, "channels": n_chan, "bits": wa,
                                    "where": mem["where"]}
            _add(d, ff_io=fh * fw * n_chan * wa)          # the kernel window registers
        else:
            # conv_2d_latency_cl: n_partitions iterations at II=R, one after the other.
            partitions = max(1, int(layer.get_attr("n_partitions", 1) or 1))
            d["ii_cycles"] = rf * partitions
            d["depth_cycles"] = d["ii_cycles"] + cycles - 1
    else:
        if io_stream:
            # DataPrepare reads n_in / pack packets at II=1, then one II=R kernel.
            packets = _dense_packets(layer.model.graph.get(layer.inputs[0]))
            d["depth_cycles"] = cycles + rf + 1
            d["ii_cycles"] = max(packets, rf, d["depth_cycles"])
            d["stream_cycles"] = packets
        else:
            # PIPELINE II=R with ALLOCATION limit=multiplier_limit: a pruned layer finishes its
            # DSP products in fewer cycles than R.
            # Under that limit HLS rewrites constants of up to three signed digits as shift-add.
            limit = max(1, math.ceil(cols.size / rf) - int((~nonzero).sum()) // rf)
            n_mul = int((dsp & (digits > c["alloc_max_weight_digits"])).sum())
            d["ii_cycles"] = min(rf, max(1, math.ceil(n_mul / limit))) if rf > 1 else 1
            d["depth_cycles"] = d["ii_cycles"] - 1 + cycles - 1
        _add(d, ff_io=int(np.prod(inp)) * wa if not io_stream else 0)


def _dense_packets(prev) -> int:
    """Reads a stream Dense makes per pattern: the packets of its input stream (one per pixel
    after a Flatten of a conv stream, one in total between dense layers)."""
    src = prev
    while src is not None and src.class_name == "Reshape":  # Flatten: no hardware in io_stream
        src = src.model.graph.get(src.inputs[0])
    if src is None:
        return 1
    shape = src.get_output_variable().shape
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def _pool_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    io_stream = ctx["io_stream"]
    inp = layer.get_input_variable().shape
    wa = _var_width(layer.get_input_variable())
    ph = int(layer.get_attr("pool_height", 2) or 2)
    pw = int(layer.get_attr("pool_width", ph) or ph)
    n_filt = int(layer.get_attr("n_filt", inp[-1]))
    in_w = int(layer.get_attr("in_width", inp[1] if len(inp) > 2 else inp[0]))
    in_h = int(layer.get_attr("in_height", inp[0] if len(inp) > 2 else 1))
    # max over ph*pw values per channel: ph*pw-1 comparators + a mux of wa bits each; io_parallel
    # unrolls it over every output pixel (nnet_pooling.h), io_stream does one pixel at a time.
    copies = 1 if io_stream else int(np.prod(layer.get_output_variable().shape[:-1]))
    _add(d, lut_logic=copies * n_filt * (ph * pw - 1) * 2 * wa, ff_io=copies * n_filt * ph * pw * wa)
    d["depth_cycles"] = 1
    if io_stream:
        d["ii_cycles"] = in_h * in_w                      # one pixel per clock (PIPELINE)
        if ph > 1:
            mem = memory_cost(in_w, wa, c)
            n_buf = (ph - 1) * n_filt
            d["BRAM18"] += n_buf * mem["BRAM18"]
            _add(d, lut_logic=n_buf * mem["LUT"])
            d["line_buffer"] = {"rows": ph - 1, "width_px": in_w, "channels": n_filt, "bits": wa,
                                "where": mem["where"]}
    else:
        d["ii_cycles"] = 1


def _elementwise_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    io_stream = ctx["io_stream"]
    out = layer.get_output_variable().shape
    n_chan = int(out[-1])
    wa = _var_width(layer.get_input_variable())
    wo = _var_width(layer.get_output_variable())
    per_px = n_chan if io_stream else int(np.prod(out))
    if d["class"] == "BatchNormalization":
        # nnet_batchnorm(_stream).h: one scale multiply and one bias add per element.
        scale_w = _width(layer.weights["scale"].type.precision) if "scale" in layer.weights else 16
        to_dsp = wa >= c["dsp_min_data_bits"] and scale_w >= c["dsp_min_weight_bits"]
        rf = int(layer.get_attr("reuse_factor", 1) or 1)
        inst = math.ceil(per_px / rf)
        d["multiplications"] = d["multipliers"] = inst
        if to_dsp:
            d["DSP"] = d["dsp_multipliers"] = inst
        else:
            d["lut_multipliers"] = inst
            _add(d, lut_mult=inst * wa * scale_w / 2.0)
        _add(d, lut_add=per_px * wo, ff_pipe=per_px * wo)
        d["depth_cycles"] = 2 if to_dsp else 1
    else:
        # ReLU + the cast to the quantized type (round, saturate): a compare and a mux per bit.
        _add(d, lut_logic=per_px * (wo + max(0, wa - wo) // 2), ff_io=per_px * wo if io_stream else 0)
        d["depth_cycles"] = 1 if io_stream else 0
    d["ii_cycles"] = (int(np.prod(out[:-1])) if len(out) > 1 else 1) if io_stream else 1


def _softmax_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    n = int(np.prod(layer.get_output_variable().shape))
    # nnet_activation(_stream).h softmax_stable: max, n exp lookups, sum, 1 inverse lookup,
    # n multiplies of two 18-bit table values (DSP48).
    d["BRAM18"] += c["softmax_tables_bram18"]
    d["DSP"] = d["dsp_multipliers"] = d["multipliers"] = d["multiplications"] = n
    _add(d, lut_logic=n * 18 * 3, ff_pipe=n * 18 * 2)
    dl = DELAYS_NS[ctx["family"]]
    chain = 2 * dl["bram"] + 2 * math.ceil(math.log2(max(n, 2))) * dl["add"] + dl["dsp"]
    d["depth_cycles"] = 1 + math.ceil(chain / (ctx["period"] * (1 - c["clock_uncertainty"])))
    d["ii_cycles"] = 1


# ----------------------------------------------------------------------------- one layer

NO_HARDWARE = ("Input", "Reshape", "Transpose")   # a port; Flatten/Reshape only re-label a stream


def count_layer(layer, c: dict, ctx: dict) -> dict:
    """The counts of one hls4ml layer. ctx: {"io_stream", "family", "period" (ns)}."""
    cls = layer.class_name
    d = _layer_dict(layer, cls)
    if cls in NO_HARDWARE:
        return d
    if cls in MULT_CLASSES:
        _mult_layer(layer, d, c, ctx)
    elif cls in ("Pooling2D", "Pooling1D"):
        _pool_layer(layer, d, c, ctx)
    elif cls in ELEMENTWISE_CLASSES:
        _elementwise_layer(layer, d, c, ctx)
    elif cls == "Softmax":
        _softmax_layer(layer, d, c, ctx)
    else:
        d["notes"].append(f"{cls}: not modelled (counted as a simple elementwise layer)")
        _elementwise_layer(layer, d, c, ctx)
    # Control per dataflow process (FSM, counters, stream handshakes); io_parallel inlines every
    # layer into one pipeline with one controller (counted once by the caller).
    _add(d, process=1 if ctx["io_stream"] else 0)
    return d


def stream_fifo(layer, hls_model, c: dict, split: bool) -> dict | None:
    """The FIFO a stream layer writes into (None for the network's output port)."""
    out = layer.get_output_variable()
    pragma = getattr(out, "pragma", None)
    if not (isinstance(pragma, tuple) and pragma[0] == "stream") or out in hls_model.get_output_variables():
        return None
    depth = int(pragma[1])
    width = int(out.shape[-1]) * _var_width(out)
    if split:
        # Vivado HLS splits a stream of arrays into one FIFO per element (the published csynth
        # reports list layerN_out_V_data_K_V); Vitis HLS keeps one packed FIFO.
        one = memory_cost(depth, _var_width(out), c)
        mem = {k: one[k] * int(out.shape[-1]) for k in ("BRAM18", "LUT")} | {"where": one["where"]}
    else:
        mem = memory_cost(depth, width, c)
    return {"after": layer.name, "depth": depth, "width_bits": width, **mem}
