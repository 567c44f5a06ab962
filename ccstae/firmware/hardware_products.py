"""The hardware of a layer of products (Conv1D/2D, Dense, Pointwise, Conv2DBatchnorm) as hls4ml 1.3
writes it: products on DSP48s, in shift-and-add fabric or as wires, adder trees, pipeline
registers, reuse sharing, and the layer's II and depth (ccstae/firmware/hardware.py's module
docstring says what is counted and why).

Split from hardware.py (the dispatch and the other layers): the products are most of an
encoder's resources and most of the counting rules.
"""
from __future__ import annotations

import math

import numpy as np

from ccstae.firmware.fabric import (DELAYS_NS, add_features, adder_tree_luts, csd_digits, fold_weights, frac_bits,
                                    memory_cost, pipeline, tree_level_bits, type_width, weight_bits)


def count_products(layer, d: dict, c: dict, ctx: dict) -> None:
    """A layer of products (Conv*, Dense, Pointwise*): where each product goes, the adder trees and
    their pipeline, what reuse shares, then the layer's schedule. The steps fill d in this order."""
    p = _mult_products(layer, d, c, ctx)
    cycles = _mult_adder_trees(layer, d, c, ctx, p)
    _mult_sharing(d, c, ctx, p)
    d["notes"].append(f"{p['n_dsp']} products on DSP48, {p['n_fab']} shift-add in LUTs, {int(p['shift'].sum())} shifts")
    if p["is_conv"]:
        _conv_schedule(layer, d, c, ctx, p, cycles)
    else:
        _dense_schedule(layer, d, c, ctx, p, cycles)


def _mult_products(layer, d: dict, c: dict, ctx: dict) -> dict:
    """Operand widths, and which products are wires, shift-and-add in fabric or DSP48s: the
    multiplier counts in d, and what the later steps need."""
    cls, io_stream = d["class"], ctx["io_stream"]
    rf = int(layer.get_attr("reuse_factor", 1) or 1)
    strategy = str(layer.get_attr("strategy", "latency")).lower()
    wvar = layer.weights["weight"]
    wprec = wvar.type.precision
    w = fold_weights(wprec, wvar.data)
    in_prec = layer.get_input_variable().type.precision
    wa = type_width(in_prec)                             # streamed operand
    wb = type_width(wprec)                               # constant weight
    accum = layer.get_attr("accum_t")
    acc_prec = accum.precision if accum is not None else layer.get_output_variable().type.precision
    acc_w = type_width(acc_prec)
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
    frac = frac_bits(in_prec) + frac_bits(wprec)
    acc_int = acc_w - frac_bits(acc_prec)
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
    pw = int(min(acc_w + max(0, frac - frac_bits(acc_prec)), wa + wb))   # product bits the adder tree sees
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
    return {"rf": rf, "strategy": strategy, "w": w, "wa": wa, "wb": wb, "acc_w": acc_w, "n_out": n_out, "cols": cols,
            "nonzero": nonzero, "digits": digits, "folded": folded, "shift": shift, "dsp": dsp, "pw": pw,
            "is_conv": is_conv, "copies": copies, "n_dsp": n_dsp, "n_fab": n_fab, "lut_mult": lut_mult}


def _mult_adder_trees(layer, d: dict, c: dict, ctx: dict, p: dict) -> int:
    """The adder tree of each output column and the pipeline registers the clock cuts it into:
    the pipeline's cycles."""
    rf, strategy, copies, n_out, nonzero = p["rf"], p["strategy"], p["copies"], p["n_out"], p["nonzero"]
    pw, acc_w, n_dsp, lut_mult, family = p["pw"], p["acc_w"], p["n_dsp"], p["lut_mult"], ctx["family"]
    # Adder trees: per output column, its non-zero terms (+ the bias when it is non-zero).
    bias = layer.weights.get("bias")
    bias_nz = (fold_weights(bias.type.precision, bias.data) != 0) if bias is not None else np.zeros(n_out, bool)
    terms = nonzero.sum(axis=0) + bias_nz.reshape(-1)[:n_out]
    adders = add_bits = max_levels = 0
    for t in terms:
        a, bits, lev = adder_tree_luts(int(t), pw, acc_w)
        adders, add_bits, max_levels = adders + a, add_bits + bits, max(max_levels, lev)
    d["adders"] = math.ceil(adders / (rf if strategy == "resource" else 1)) * copies
    # Pipeline: product (DSP or a shift-add level) then the adder tree, cut where the clock says.
    first = DELAYS_NS[family]["dsp"] if n_dsp else DELAYS_NS[family]["add"]
    cycles, cuts = pipeline(c, family, ctx["period"], first, max_levels)
    mean_terms = max(1, int(round(float(terms.mean())))) if terms.size else 1
    level_bits = tree_level_bits(mean_terms, pw, acc_w)
    cut_bits = sum(level_bits[min(k, len(level_bits) - 1)] for k in cuts) * n_out
    # ALLOCATION limits multipliers only: with the Latency strategy every adder of the unrolled
    # accumulation stays (the published reuse-16 designs keep their reuse-1 adder LUTs); the
    # Resource strategy shares them too.
    share = rf if strategy == "resource" else 1
    add_features(d, lut_mult=lut_mult * copies / rf, lut_add=add_bits * copies / share,
         ff_pipe=(cut_bits * copies / share) + n_out * acc_w, ff_io=0)
    d["pipeline_cycles"] = cycles
    return cycles


def _mult_sharing(d: dict, c: dict, ctx: dict, p: dict) -> None:
    """Reuse R > 1: the muxes and partial-sum registers of shared multipliers; the Resource
    strategy's weight ROMs."""
    rf, strategy, folded, nonzero, w = p["rf"], p["strategy"], p["folded"], p["nonzero"], p["w"]
    wa, wb, acc_w, io_stream = p["wa"], p["wb"], p["acc_w"], ctx["io_stream"]
    if rf > 1:
        # Shared multipliers: an R:1 mux on the data operand and on the weight (a LUT6 is a 4:1
        # mux per bit; Resource reads the weight from its ROM instead, but routes each product
        # to one of the accumulators), and the partial sums kept in registers between passes.
        shared = d["multipliers"]
        add_features(d, lut_reuse=shared * (wa + (wb if folded else acc_w)) * math.ceil((rf - 1) / 3),
             ff_pipe=shared * (wa + wb + acc_w))
        if io_stream and folded:
            # The stream kernels index the weight array with the reuse counter: HLS keeps the
            # non-zero weights in registers (csynth of the published reuse-16 CNN: ~16 FF per weight).
            add_features(d, ff_reuse=int(nonzero.sum()) * wb)
    if strategy == "resource":
        # Weights in ROMs of depth R (nnet_dense_resource.h): block_factor words per address.
        mem = memory_cost(rf, math.ceil(w.size / rf) * wb, c)
        d["BRAM18"] += mem["BRAM18"]
        add_features(d, lut_logic=mem["LUT"])
        d["notes"].append(f"weights in {mem['where']}")


def _conv_schedule(layer, d: dict, c: dict, ctx: dict, p: dict, cycles: int) -> None:
    """A convolution's II and depth: a pixel stream through line buffers (io_stream), or its
    partitions one after the other (io_parallel)."""
    rf, strategy, wa, io_stream = p["rf"], p["strategy"], p["wa"], ctx["io_stream"]
    inp = layer.get_input_variable().shape
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
            add_features(d, lut_logic=n_buf * mem["LUT"])
            d["line_buffer"] = {"rows": fh - 1, "width_px": in_w, "channels": n_chan, "bits": wa,
                                "where": mem["where"]}
        add_features(d, ff_io=fh * fw * n_chan * wa)          # the kernel window registers
    else:
        # conv_2d_latency_cl: n_partitions iterations at II=R, one after the other.
        partitions = max(1, int(layer.get_attr("n_partitions", 1) or 1))
        d["ii_cycles"] = rf * partitions
        d["depth_cycles"] = d["ii_cycles"] + cycles - 1


def _dense_schedule(layer, d: dict, c: dict, ctx: dict, p: dict, cycles: int) -> None:
    """A dense layer's II and depth: its input packets then one kernel (io_stream), or one
    pipelined kernel under the ALLOCATION limit (io_parallel)."""
    rf, cols, nonzero, dsp, digits, wa = p["rf"], p["cols"], p["nonzero"], p["dsp"], p["digits"], p["wa"]
    io_stream = ctx["io_stream"]
    inp = layer.get_input_variable().shape
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
    add_features(d, ff_io=int(np.prod(inp)) * wa if not io_stream else 0)


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
