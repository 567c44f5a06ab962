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

# The primitives' costs (products, memories, adder trees, pipeline cuts) and hls4ml's type widths are
# in fabric.py (the front end's and the centroid core's estimates use them too), the layers of
# products in hardware_products.py; this module dispatches hls4ml's layers and counts the others.
from ccstae.firmware.fabric import DELAYS_NS, add_features, memory_cost, type_width, var_width
from ccstae.firmware.hardware_products import count_products

MULT_CLASSES = {"Conv1D", "Conv2D", "Conv2DBatchnorm", "Dense", "PointwiseConv1D", "PointwiseConv2D"}
ELEMENTWISE_CLASSES = {"Activation", "ReLU", "LeakyReLU", "ParametrizedActivation", "PReLU",
                       "HardActivation", "BatchNormalization", "ApplyAlpha"}


# ----------------------------------------------------------------------------- per layer

def _layer_dict(layer, cls: str) -> dict:
    return {"name": layer.name, "class": cls, "multiplications": 0, "multipliers": 0,
            "dsp_multipliers": 0, "lut_multipliers": 0, "adders": 0, "LUT": 0, "FF": 0, "DSP": 0,
            "BRAM18": 0, "depth_cycles": 0, "ii_cycles": 0, "features": {}, "notes": []}


def _pool_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    io_stream = ctx["io_stream"]
    inp = layer.get_input_variable().shape
    wa = var_width(layer.get_input_variable())
    ph = int(layer.get_attr("pool_height", 2) or 2)
    pw = int(layer.get_attr("pool_width", ph) or ph)
    n_filt = int(layer.get_attr("n_filt", inp[-1]))
    in_w = int(layer.get_attr("in_width", inp[1] if len(inp) > 2 else inp[0]))
    in_h = int(layer.get_attr("in_height", inp[0] if len(inp) > 2 else 1))
    # max over ph*pw values per channel: ph*pw-1 comparators + a mux of wa bits each; io_parallel
    # unrolls it over every output pixel (nnet_pooling.h), io_stream does one pixel at a time.
    copies = 1 if io_stream else int(np.prod(layer.get_output_variable().shape[:-1]))
    add_features(d, lut_logic=copies * n_filt * (ph * pw - 1) * 2 * wa, ff_io=copies * n_filt * ph * pw * wa)
    d["depth_cycles"] = 1
    if io_stream:
        d["ii_cycles"] = in_h * in_w                      # one pixel per clock (PIPELINE)
        if ph > 1:
            mem = memory_cost(in_w, wa, c)
            n_buf = (ph - 1) * n_filt
            d["BRAM18"] += n_buf * mem["BRAM18"]
            add_features(d, lut_logic=n_buf * mem["LUT"])
            d["line_buffer"] = {"rows": ph - 1, "width_px": in_w, "channels": n_filt, "bits": wa,
                                "where": mem["where"]}
    else:
        d["ii_cycles"] = 1


def _elementwise_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    io_stream = ctx["io_stream"]
    out = layer.get_output_variable().shape
    n_chan = int(out[-1])
    wa = var_width(layer.get_input_variable())
    wo = var_width(layer.get_output_variable())
    per_px = n_chan if io_stream else int(np.prod(out))
    if d["class"] == "BatchNormalization":
        # nnet_batchnorm(_stream).h: one scale multiply and one bias add per element.
        scale_w = type_width(layer.weights["scale"].type.precision) if "scale" in layer.weights else 16
        to_dsp = wa >= c["dsp_min_data_bits"] and scale_w >= c["dsp_min_weight_bits"]
        rf = int(layer.get_attr("reuse_factor", 1) or 1)
        inst = math.ceil(per_px / rf)
        d["multiplications"] = d["multipliers"] = inst
        if to_dsp:
            d["DSP"] = d["dsp_multipliers"] = inst
        else:
            d["lut_multipliers"] = inst
            add_features(d, lut_mult=inst * wa * scale_w / 2.0)
        add_features(d, lut_add=per_px * wo, ff_pipe=per_px * wo)
        d["depth_cycles"] = 2 if to_dsp else 1
    else:
        # ReLU + the cast to the quantized type (round, saturate): a compare and a mux per bit.
        add_features(d, lut_logic=per_px * (wo + max(0, wa - wo) // 2), ff_io=per_px * wo if io_stream else 0)
        d["depth_cycles"] = 1 if io_stream else 0
    d["ii_cycles"] = (int(np.prod(out[:-1])) if len(out) > 1 else 1) if io_stream else 1


def _softmax_layer(layer, d: dict, c: dict, ctx: dict) -> None:
    n = int(np.prod(layer.get_output_variable().shape))
    # nnet_activation(_stream).h softmax_stable: max, n exp lookups, sum, 1 inverse lookup,
    # n multiplies of two 18-bit table values (DSP48).
    d["BRAM18"] += c["softmax_tables_bram18"]
    d["DSP"] = d["dsp_multipliers"] = d["multipliers"] = d["multiplications"] = n
    add_features(d, lut_logic=n * 18 * 3, ff_pipe=n * 18 * 2)
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
        count_products(layer, d, c, ctx)
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
    add_features(d, process=1 if ctx["io_stream"] else 0)
    return d


def stream_fifo(layer, hls_model, c: dict, split: bool) -> dict | None:
    """The FIFO a stream layer writes into (None for the network's output port)."""
    out = layer.get_output_variable()
    pragma = getattr(out, "pragma", None)
    if not (isinstance(pragma, tuple) and pragma[0] == "stream") or out in hls_model.get_output_variables():
        return None
    depth = int(pragma[1])
    width = int(out.shape[-1]) * var_width(out)
    if split:
        # Vivado HLS splits a stream of arrays into one FIFO per element (the published csynth
        # reports list layerN_out_V_data_K_V); Vitis HLS keeps one packed FIFO.
        one = memory_cost(depth, var_width(out), c)
        mem = {k: one[k] * int(out.shape[-1]) for k in ("BRAM18", "LUT")} | {"where": one["where"]}
    else:
        mem = memory_cost(depth, width, c)
    return {"after": layer.name, "depth": depth, "width_bits": width, **mem}
