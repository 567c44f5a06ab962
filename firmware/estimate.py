"""FPGA resource and latency estimates from a converted hls4ml model, without compile() or Vivado.

    hls_model = convert.convert(qencoder, spec, out_dir)
    est = estimate(hls_model)              # LUT/FF/DSP/BRAM18, latency, II, patterns/s, % of parts
    keeps_up(est, DETECTORS["arina"])      # True when the firmware is faster than the camera

Every number here is an *estimate*: est["kind"] == "estimate (hls4ml graph model)". Numbers from a
vendor csynth report (firmware/vendor.py) go through `from_vendor_report` into the same schema
with kind "synthesis (...)", so a table never mixes the two silently.

How the estimate is built (the hardware hls4ml 1.3 writes, read from its templates):

* Multiplications. With the Latency strategy the weights are compile-time constants
  (nnet_dense_latency.h: `#pragma HLS function_instantiate variable=weights`), so HLS removes
  products by a constant zero and turns products by +-2^k into wires (shifts): only the other
  weights cost a multiplier. Pruning therefore saves multipliers one for one.
* DSP or LUTs. A product is bound to a DSP48 when the streamed (data) operand is wider than
  `dsp_min_data_bits` and the constant weight wider than `dsp_min_weight_bits`; otherwise it
  becomes shift-and-add logic in LUTs. Why this rule: with a constant operand the cost in fabric
  grows with the data width, and the hls4ml paper (Duarte et al. 2018, JINST 13 P07027) found HLS
  moving multiplications of <= ~10-bit operands to LUTs. On the hls4ml tutorial's SVHN CNN
  (6-bit weights) it puts the first convolution (16-bit input pixels) and the batch-norm scales
  on DSPs, the 6-bit-activation layers in LUTs, which is what reproduces its ~340 DSPs.
  A LUT multiplier costs `lut_per_mult_bit * wa * wb` LUTs (shift-add of a constant: about one
  adder of the data width per non-zero digit of the weight).
* Adder trees. Each output sums its non-zero products (+ bias): n-1 two-input adders in a
  balanced tree. Level l of the tree is (product width + l) bits wide, capped at the
  accumulator width (Vivado trims the bits that cannot change); nominally 1 LUT per bit
  (UltraScale carry chain, CARRY8 + one LUT per bit), scaled by `adder_lut_per_bit` < 1
  because synthesis merges the trees with the shift-add constant multipliers.
* Reuse factor R. `#pragma HLS ALLOCATION ... limit=multiplier_limit` and `PIPELINE II=R`
  (nnet_dense_latency.h, nnet_conv2d_stream.h): R divides multipliers and adders and multiplies
  each layer's II.
* io_stream dataflow (nnet_conv2d_stream.h conv_2d_buffer_cl): a convolution reads one input
  pixel (all channels) per R clocks and keeps filt_height-1 rows in `ap_shift_reg` line
  buffers; pooling keeps pool_height-1 rows (nnet_pooling_stream.h); a Dense after Flatten
  reads one packed pixel per clock (nnet_dense_stream.h). Layers run concurrently (DATAFLOW),
  so the network's II is the largest layer II, and the latency is the input streaming time of
  the first layer plus each layer's pipeline depth.
* Memories. Line buffers and the FIFOs between layers (hls4ml declares every stream with the
  depth of its whole feature map, `('stream', depth)` in the graph) go to BRAM18 when deep and
  wide enough, else to SRL/LUTRAM. BRAM18 count: the best of the 18 Kb aspect ratios
  (512x36, 1Kx18, 2Kx9, 4Kx4, 8Kx2, 16Kx1).
* Weights. Latency strategy: constants in the logic (no memory). Resource strategy: weights
  in ROMs of depth R (nnet_dense_resource.h), BRAM when deep, LUT-ROM otherwise.
* io_parallel: dense layers have II = R; a convolution (nnet_conv2d_latency.h) computes
  out_pixels / n_partitions pixels per iteration over n_partitions iterations at II = R, so its
  II is R x n_partitions. Network II = the largest layer II, latency = the sum of the layer
  depths (a convolution's depth includes its partition loop). Rougher than io_stream.

The few constants (`DEFAULTS`) were tuned once on the hls4ml tutorial's SVHN CNN against its
published Vivado synthesis numbers (calibration_table()); they are not fitted to this project.
"""
from __future__ import annotations

import math
import time

import numpy as np

KIND_ESTIMATE = "estimate (hls4ml graph model)"
RESOURCES = ("LUT", "FF", "DSP", "BRAM18")

# Tuned on the SVHN calibration model (see calibration_table); change with care, re-run it.
DEFAULTS = {
    "dsp_min_data_bits": 11,      # data operand must be wider than 10 bits for a DSP48 ...
    "dsp_min_weight_bits": 5,     # ... and the constant weight wider than 4 bits
    "lut_per_mult_bit": 0.15,     # LUTs of a constant multiplier in fabric per wa*wb bit
    "adder_lut_per_bit": 0.6,     # LUTs per adder result bit after Vivado trims and packs the trees
    "adder_levels_per_cycle": 5,  # adder-tree levels HLS chains in one 5 ns cycle
    "dsp_stages": 2,              # pipeline stages of a DSP48 product (one for a LUT product)
    "ff_reg_fraction": 0.09,      # share of arithmetic result bits that end up in pipeline registers
    "layer_overhead_lut": 120,    # control FSM, counters, stream handshakes per dataflow process
    "layer_overhead_ff": 150,
    "srl_max_depth": 24,          # memories at most this deep stay in SRL/LUTRAM ...
    "bram_min_bits": 128,         # ... as do those smaller than this many bits
    "softmax_tables_bram18": 2,   # exp and inverse tables, 1024 x 18 bits each
}

# FPGA parts: totals from the AMD/Xilinx product tables (CLB LUTs, CLB flip-flops, DSP slices,
# 18 Kb block RAMs = 2 x the 36 Kb count). Sources: DS890 UltraScale Architecture and Product
# Data Sheet (KU115), DS891 Zynq UltraScale+ MPSoC Overview (ZU9EG), DS922 Kintex UltraScale+
# (KU5P), DS923 Virtex UltraScale+ (VU9P), DS962 Alveo U200/U250 data sheet (U250; the same
# totals hls4ml's csynth reports list as "available" for xcu250-figd2104-2L-e).
PARTS = {
    "xcku115": {"LUT": 663_360, "FF": 1_326_720, "DSP": 5_520, "BRAM18": 4_320},   # 2,160 BRAM36
    "xcku5p": {"LUT": 216_960, "FF": 433_920, "DSP": 1_824, "BRAM18": 960},         # 480 BRAM36
    "xczu9eg": {"LUT": 274_080, "FF": 548_160, "DSP": 2_520, "BRAM18": 1_824},      # 912 BRAM36
    "xcvu9p": {"LUT": 1_182_240, "FF": 2_364_480, "DSP": 6_840, "BRAM18": 4_320},   # 2,160 BRAM36
    "xcu250": {"LUT": 1_728_000, "FF": 3_456_000, "DSP": 12_288, "BRAM18": 5_376},  # 2,688 BRAM36
}

# 4D-STEM cameras: full-frame rates in frames (patterns) per second. "confidence" says how sure
# the number is; the encoder sees binned/cropped patterns, so only the rate matters here.
DETECTORS = {
    # NCEM 4D Camera (LBNL/Gatan), 576x576, 87 kHz: Ercius et al., Microsc. Microanal. (2020) and
    # NCEM's instrument page. Confident.
    "ncem_4d_camera": {"name": "NCEM 4D Camera", "frame_rate_hz": 87_000, "confidence": "high"},
    # Dectris ARINA, 192x192 hybrid pixel, up to 120 kHz (Dectris product sheet). Confident.
    "arina": {"name": "Dectris ARINA", "frame_rate_hz": 120_000, "confidence": "high"},
    # EMPAD (Tate et al., Microsc. Microanal. 22, 237 (2016)), 128x128, ~1.1 kHz. Confident.
    "empad": {"name": "EMPAD (Thermo Fisher)", "frame_rate_hz": 1_100, "confidence": "high"},
    # EMPAD-G2 (Philipp et al., Microsc. Microanal. 28 (2022)): ~10 kHz. Fairly confident.
    "empad_g2": {"name": "EMPAD-G2", "frame_rate_hz": 10_000, "confidence": "medium"},
    # Quantum Detectors Merlin (Medipix3), 256x256: ~12.5 kHz in 1-bit counting mode, ~1-2 kHz
    # at 12-bit depth (vendor material; mode-dependent). Less sure of the exact figures.
    "merlin_1bit": {"name": "Merlin/Medipix3 1-bit", "frame_rate_hz": 12_500, "confidence": "medium"},
    "merlin_12bit": {"name": "Merlin/Medipix3 12-bit", "frame_rate_hz": 1_200, "confidence": "low"},
}

# SVHN CNN of the hls4ml tutorial (archived/ folder, Vivado HLS / Vivado 2020.1, xcu250, 5 ns,
# io_stream), QKeras 6-bit + 50 % pruned: shared/STACK.md.
PUBLISHED_SVHN = {
    "hls": {"LUT": 263_280, "FF": 43_847, "DSP": 340, "BRAM18": 100, "latency_cycles": 1_044,
            "ii_cycles": 1_028},
    "vivado": {"LUT": 118_931, "FF": 30_702, "DSP": 353, "BRAM18": 68},
}

MULT_CLASSES = {"Conv1D", "Conv2D", "Conv2DBatchnorm", "Dense", "PointwiseConv1D", "PointwiseConv2D"}
ELEMENTWISE_CLASSES = {"Activation", "ReLU", "LeakyReLU", "ParametrizedActivation", "PReLU",
                       "HardActivation", "BatchNormalization", "ApplyAlpha"}


# ----------------------------------------------------------------------------- helpers

def _width(precision) -> int:
    return int(getattr(precision, "width", 16))


def _var_width(var) -> int:
    return _width(var.type.precision) if var is not None else 16


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


def _is_pow2(w: np.ndarray) -> np.ndarray:
    a = np.abs(w)
    with np.errstate(divide="ignore"):
        e = np.log2(np.where(a > 0, a, 1.0))
    return (a > 0) & (np.abs(e - np.round(e)) < 1e-9)


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
    """(adders, LUTs, levels) of a balanced tree summing n_terms values.

    Level l adds two (product_width + l - 1)-bit numbers into product_width + l bits, capped at
    the accumulator width: 1 LUT per result bit (carry chain).
    """
    adders = luts = levels = 0
    n = n_terms
    while n > 1:
        levels += 1
        pairs = n // 2
        adders += pairs
        luts += pairs * min(accum_width, product_width + levels)  # result bits; scaled by the caller
        n -= pairs
    return adders, luts, levels


def _layer_dict(layer, cls: str) -> dict:
    return {"name": layer.name, "class": cls, "multiplications": 0, "multipliers": 0,
            "dsp_multipliers": 0, "lut_multipliers": 0, "adders": 0, "LUT": 0, "FF": 0, "DSP": 0,
            "BRAM18": 0, "depth_cycles": 0, "ii_cycles": 0, "notes": []}


# ----------------------------------------------------------------------------- per layer

def _mult_layer(layer, d: dict, c: dict, io_stream: bool) -> None:
    cls = d["class"]
    rf = int(layer.get_attr("reuse_factor", 1) or 1)
    strategy = str(layer.get_attr("strategy", "latency")).lower()
    wvar = layer.weights["weight"]
    w = _fold(wvar.type.precision, wvar.data)
    wa = _var_width(layer.get_input_variable())          # streamed operand
    wb = _width(wvar.type.precision)                      # constant weight
    accum = layer.get_attr("accum_t")
    acc_w = _width(accum.precision) if accum is not None else _var_width(layer.get_output_variable())
    n_out = int(layer.get_attr("n_filt", 0) or layer.get_attr("n_out", 0) or w.shape[-1])
    if w.shape[-1] != n_out and w.shape[0] == n_out:
        w = np.moveaxis(w, 0, -1)  # the Resource strategy stores weights transposed (outputs first)
    cols = w.reshape(-1, n_out)
    nonzero = cols != 0
    pow2 = _is_pow2(cols)
    # Resource strategy keeps weights in memory: nothing is constant-folded, every product is real.
    folded = strategy != "resource"
    real = (nonzero & ~pow2) if folded else np.ones_like(nonzero)
    n_real = int(real.sum())
    d["multiplications"] = int(nonzero.sum())
    d["shift_only"] = int((nonzero & pow2).sum()) if folded else 0
    d["zero_weights"] = int((~nonzero).sum())
    d["reuse_factor"] = rf
    d["strategy"] = strategy
    # io_parallel convolutions (nnet_conv2d_latency.h) unroll n_pixels output pixels per loop
    # iteration over n_partitions: n_pixels copies of the kernel's multipliers.
    is_conv = cls.startswith("Conv") or cls.startswith("Pointwise")
    copies = 1
    if is_conv and not io_stream:
        out_px = int(np.prod(layer.get_output_variable().shape[:-1]))
        partitions = int(layer.get_attr("n_partitions", out_px) or out_px)
        copies = max(1, out_px // partitions)
    inst = math.ceil(n_real / rf) * copies                # ALLOCATION limit=multiplier_limit
    d["multipliers"] = inst
    pw = min(acc_w, wa + wb)
    to_dsp = wa >= c["dsp_min_data_bits"] and wb >= c["dsp_min_weight_bits"]
    if to_dsp:
        d["dsp_multipliers"] = d["DSP"] = inst
        d["notes"].append(f"{wa}x{wb}-bit products -> DSP48")
    else:
        d["lut_multipliers"] = inst
        d["LUT"] += round(inst * c["lut_per_mult_bit"] * wa * wb)
        d["notes"].append(f"{wa}x{wb}-bit products -> LUTs")
    # Adder trees: per output column, its non-zero terms (+ the bias when it is non-zero).
    bias = layer.weights.get("bias")
    bias_nz = (_fold(bias.type.precision, bias.data) != 0) if bias is not None else np.zeros(n_out, bool)
    terms = nonzero.sum(axis=0) + bias_nz.reshape(-1)[:n_out]
    adders = add_luts = max_levels = 0
    for t in terms:
        a, lut, lev = adder_tree_luts(int(t), pw, acc_w)
        adders, add_luts, max_levels = adders + a, add_luts + lut, max(max_levels, lev)
    d["adders"] = math.ceil(adders / rf) * copies
    add_luts = add_luts * copies
    d["LUT"] += math.ceil(c["adder_lut_per_bit"] * add_luts / rf)
    # Registers between pipeline stages: a share of all arithmetic result bits.
    result_bits = inst * pw + add_luts / rf
    d["FF"] += round(c["ff_reg_fraction"] * result_bits) + n_out * acc_w
    mult_stages = c["dsp_stages"] if to_dsp else 1        # DSP48 input/product registers vs one LUT stage
    d["depth_cycles"] = mult_stages + math.ceil(max_levels / c["adder_levels_per_cycle"]) + (rf - 1)
    if strategy == "resource":
        # Weights in ROMs of depth R (nnet_dense_resource.h): block_factor words per address.
        width = math.ceil(w.size / rf) * wb
        mem = memory_cost(rf, width, c)
        d["BRAM18"] += mem["BRAM18"]
        d["LUT"] += mem["LUT"]
        d["notes"].append(f"weights in {mem['where']}")
    else:
        d["notes"].append("weights are constants in fabric")
    inp = layer.get_input_variable().shape
    if is_conv:
        fh = int(layer.get_attr("filt_height", 1) or 1)
        fw = int(layer.get_attr("filt_width", 1) or 1)
        n_chan = int(layer.get_attr("n_chan", inp[-1]))
        in_w = int(layer.get_attr("in_width", inp[-2] if len(inp) > 2 else inp[0]))
        in_h = int(layer.get_attr("in_height", inp[0] if len(inp) > 2 else 1))
        pixels = in_h * in_w
        if io_stream:
            # conv_2d_buffer_cl: one pixel per II=R loop iteration over every input pixel.
            d["ii_cycles"] = pixels * rf
            if fh > 1:
                mem = memory_cost(in_w, wa, c)            # one ap_shift_reg per (row, channel)
                n_buf = (fh - 1) * n_chan
                d["BRAM18"] += n_buf * mem["BRAM18"]
                d["LUT"] += n_buf * mem["LUT"]
                d["line_buffer"] = {"rows": fh - 1, "width_px": in_w, "channels": n_chan, "bits": wa,
                                    "where": mem["where"]}
            d["FF"] += fh * fw * n_chan * wa              # the kernel window registers
        else:
            # conv_2d_latency_cl: n_partitions iterations at II=R, one after the other.
            d["ii_cycles"] = rf * partitions
            d["depth_cycles"] += d["ii_cycles"] - rf
    else:
        # Dense. io_stream: DataPrepare reads n_in / pack packets at II=1, then one II=R kernel.
        if io_stream:
            packets = _dense_packets(layer.model.graph.get(layer.inputs[0]))
            d["ii_cycles"] = max(packets, rf)
        else:
            d["ii_cycles"] = rf


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


def _pool_layer(layer, d: dict, c: dict, io_stream: bool) -> None:
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
    d["LUT"] += copies * n_filt * (ph * pw - 1) * 2 * wa
    d["FF"] += copies * n_filt * ph * pw * wa             # the pooling window registers
    d["depth_cycles"] = 1
    if io_stream:
        d["ii_cycles"] = in_h * in_w                      # one pixel per clock (PIPELINE)
        if ph > 1:
            mem = memory_cost(in_w, wa, c)
            n_buf = (ph - 1) * n_filt
            d["BRAM18"] += n_buf * mem["BRAM18"]
            d["LUT"] += n_buf * mem["LUT"]
            d["line_buffer"] = {"rows": ph - 1, "width_px": in_w, "channels": n_filt, "bits": wa,
                                "where": mem["where"]}
    else:
        d["ii_cycles"] = 1


def _elementwise_layer(layer, d: dict, c: dict, io_stream: bool) -> None:
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
            d["LUT"] += round(inst * c["lut_per_mult_bit"] * wa * scale_w)
        d["LUT"] += per_px * wo
        d["FF"] += per_px * wo
        d["depth_cycles"] = c["dsp_stages"] if to_dsp else 1
    else:
        # ReLU + the cast to the quantized type (round, saturate): a compare and a mux per bit.
        d["LUT"] += per_px * (wo + max(0, wa - wo) // 2)
        d["FF"] += per_px * wo
        d["depth_cycles"] = 1
    d["ii_cycles"] = (int(np.prod(out[:-1])) if len(out) > 1 else 1) if io_stream else 1


def _softmax_layer(layer, d: dict, c: dict, io_stream: bool) -> None:
    n = int(np.prod(layer.get_output_variable().shape))
    # nnet_activation(_stream).h softmax_stable: max, n exp lookups, sum, 1 inverse lookup,
    # n multiplies of two 18-bit table values (DSP48).
    d["BRAM18"] += c["softmax_tables_bram18"]
    d["DSP"] = d["dsp_multipliers"] = d["multipliers"] = d["multiplications"] = n
    d["LUT"] += n * 18 * 3
    d["FF"] += n * 18 * 3
    d["depth_cycles"] = 2 + math.ceil(math.log2(max(n, 2)) / c["adder_levels_per_cycle"]) + 2
    d["ii_cycles"] = 1


# ----------------------------------------------------------------------------- the model

def estimate(hls_model, clock_period_ns: float | None = None, constants: dict | None = None) -> dict:
    """Resources, latency and throughput of a converted (not compiled) hls4ml model.

    Returns {"kind", "io_type", "clock_period_ns", "layers": [...], "fifos": [...],
    "total": {LUT, FF, DSP, BRAM18, multiplications, multipliers, dsp_multipliers,
    lut_multipliers}, "latency_cycles", "ii_cycles", "latency_us", "ii_us", "patterns_per_s",
    "parts": {part: {LUT: fraction, ...}}, "constants"}.
    """
    c = dict(DEFAULTS, **(constants or {}))
    cfg = hls_model.config
    io_type = str(cfg.get_config_value("IOType") or "io_parallel")
    io_stream = io_type == "io_stream"
    if clock_period_ns is None:
        clock_period_ns = float(cfg.get_config_value("ClockPeriod") or 5.0)
    layers, fifos = [], []
    for layer in hls_model.get_layers():
        cls = layer.class_name
        d = _layer_dict(layer, cls)
        if cls in MULT_CLASSES:
            _mult_layer(layer, d, c, io_stream)
        elif cls in ("Pooling2D", "Pooling1D"):
            _pool_layer(layer, d, c, io_stream)
        elif cls in ELEMENTWISE_CLASSES:
            _elementwise_layer(layer, d, c, io_stream)
        elif cls == "Softmax":
            _softmax_layer(layer, d, c, io_stream)
        elif cls in ("Input", "Reshape", "Transpose"):
            # Input: a port. Reshape/Flatten: re-labels the stream, no hardware in hls4ml.
            layers.append(d)
            continue
        else:
            d["notes"].append(f"{cls}: not modelled (counted as a simple elementwise layer)")
            _elementwise_layer(layer, d, c, io_stream)
        d["LUT"] += c["layer_overhead_lut"]
        d["FF"] += c["layer_overhead_ff"]
        layers.append(d)
        # The FIFO this layer writes into (not the network's output port).
        out = layer.get_output_variable()
        pragma = getattr(out, "pragma", None)
        if io_stream and isinstance(pragma, tuple) and pragma[0] == "stream" and \
                out not in hls_model.get_output_variables():
            depth = int(pragma[1])
            width = int(out.shape[-1]) * _var_width(out)
            mem = memory_cost(depth, width, c)
            fifos.append({"after": layer.name, "depth": depth, "width_bits": width, **mem})

    total = {k: sum(d[k] for d in layers) for k in
             ("LUT", "FF", "DSP", "BRAM18", "multiplications", "multipliers", "dsp_multipliers",
              "lut_multipliers", "adders")}
    total["LUT"] += sum(f["LUT"] for f in fifos)
    total["BRAM18"] += sum(f["BRAM18"] for f in fifos)
    active = [d for d in layers if d["ii_cycles"]]
    if io_stream:
        ii = max(d["ii_cycles"] for d in active)
        # The first layer streams the whole input in, then each layer adds its pipeline depth.
        latency = active[0]["ii_cycles"] + sum(d["depth_cycles"] for d in active)
    else:
        ii = max(d["ii_cycles"] for d in active)
        latency = sum(d["depth_cycles"] for d in active)
    return finish({"kind": KIND_ESTIMATE, "io_type": io_type, "clock_period_ns": float(clock_period_ns),
                   "layers": layers, "fifos": fifos, "total": total, "latency_cycles": int(latency),
                   "ii_cycles": int(ii), "constants": c})


def finish(est: dict) -> dict:
    """Add the derived numbers (us, patterns/s, fraction of each part) to an estimate or report."""
    clk = est["clock_period_ns"]
    ii, lat = est.get("ii_cycles"), est.get("latency_cycles")
    est["clock_mhz"] = 1e3 / clk
    est["latency_us"] = lat * clk / 1e3 if lat is not None else None
    est["ii_us"] = ii * clk / 1e3 if ii is not None else None
    est["patterns_per_s"] = 1e9 / (ii * clk) if ii else None
    est["parts"] = {part: {r: (est["total"][r] / n if est["total"].get(r) is not None else None)
                           for r, n in cap.items()}
                    for part, cap in PARTS.items()}
    return est


def from_vendor_report(report: dict, clock_period_ns: float | None = None) -> dict:
    """A vendor csynth report (firmware/vendor.parse_report, or its 'summary') in the estimate schema.

    kind: "synthesis (HLS csynth report)". Resources and cycles are the tool's; nothing per layer.
    """
    s = report.get("summary", report)
    clk = clock_period_ns or s.get("target_clock_ns") or 5.0
    total = {"LUT": s.get("LUT"), "FF": s.get("FF"), "DSP": s.get("DSP"),
             "BRAM18": s.get("BRAM_18K", s.get("BRAM18"))}
    est = {"kind": "synthesis (HLS csynth report)", "io_type": s.get("io_type"),
           "clock_period_ns": float(clk), "estimated_clock_ns": s.get("estimated_clock_ns"),
           "layers": [], "fifos": [], "total": total, "latency_cycles": s.get("latency_cycles"),
           "ii_cycles": s.get("interval_cycles")}
    return finish(est)


# ----------------------------------------------------------------------------- detectors

def keeps_up(est: dict, detector) -> bool:
    """True when the firmware's throughput reaches the detector's frame rate."""
    return margin(est, detector) >= 1.0


def margin(est: dict, detector) -> float:
    """patterns/s of the firmware over the detector's frames/s (>= 1: keeps up)."""
    det = DETECTORS[detector] if isinstance(detector, str) else detector
    return (est.get("patterns_per_s") or 0.0) / float(det["frame_rate_hz"])


# ----------------------------------------------------------------------------- calibration

def build_svhn_qmodel(sparsity: float = 0.5, seed: int = 0):
    """The hls4ml tutorial's SVHN CNN (archived/ part 6, QKeras + pruning), random weights.

    Architecture as published (shared/STACK.md): 32x32x3 input; 3 x [QConv2DBatchnorm 3x3
    (16, 16, 24 filters), quantized_relu(6), MaxPooling 2x2]; Flatten; 2 x [QDense (42, 64), no
    bias, BatchNormalization, quantized_relu(6)]; Dense(10) float + softmax. Kernels and biases
    quantized_bits(6, 0, alpha=1). Assumptions: weights are uniform random in the quantizer
    range with the `sparsity` smallest magnitudes zeroed in every layer but the output one
    (the tutorial prunes all but `output_dense` to 50 %); batch-norm statistics are random
    near 1, so the folded conv kernels keep their zeros.
    """
    from qkeras import QActivation, QConv2DBatchnorm, QDense
    from tensorflow import keras

    q6 = "quantized_bits(6,0,alpha=1)"
    inp = keras.Input((32, 32, 3), name="input_1")
    x = inp
    for i, f in enumerate((16, 16, 24)):
        x = QConv2DBatchnorm(f, (3, 3), kernel_quantizer=q6, bias_quantizer=q6, use_bias=True,
                             name=f"fused_convbn_{i}")(x)
        x = QActivation("quantized_relu(6)", name=f"conv_act_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, n in enumerate((42, 64)):
        x = QDense(n, kernel_quantizer=q6, bias_quantizer=q6, use_bias=False, name=f"dense_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_dense_{i}")(x)
        x = QActivation("quantized_relu(6)", name=f"dense_act_{i}")(x)
    x = keras.layers.Dense(10, name="output_dense")(x)
    x = keras.layers.Activation("softmax", name="output_softmax")(x)
    model = keras.Model(inp, x, name="svhn_cnn")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not layer.weights:
            continue
        new = []
        for v in layer.weights:
            name, shape = v.name.split("/")[-1], tuple(v.shape)
            if "kernel" in name:
                k = rng.uniform(-1, 1, shape)
                if layer.name != "output_dense" and sparsity > 0:
                    k[np.abs(k) < np.quantile(np.abs(k), sparsity)] = 0.0
                new.append(k)
            elif "gamma" in name or "variance" in name:  # keep the folded scales near 1
                new.append(rng.uniform(0.8, 1.2, shape))
            else:
                new.append(rng.uniform(-0.1, 0.1, shape))
        layer.set_weights(new)
    return model


def zero_smallest(model, sparsity: float, skip=()) -> None:
    """Zero the `sparsity` smallest-magnitude kernel weights of every Conv/Dense layer (in place):
    a stand-in for magnitude pruning (quant/prune.py) when only the resources matter."""
    for layer in model.layers:
        if layer.name in skip or not any("kernel" in v.name for v in layer.weights):
            continue
        weights = layer.get_weights()
        k = weights[0]
        if sparsity > 0:
            k[np.abs(k) <= np.quantile(np.abs(k), sparsity)] = 0.0
        layer.set_weights(weights)


def convert_svhn(model, out_dir=None):
    """Convert as the tutorial did: Vivado backend, ap_fixed<16,6> default, RF 1, Latency,
    io_stream, xcu250, 5 ns, softmax 'Stable'. Not bit-exact (the archived tutorial predates it)."""
    import tempfile

    import hls4ml

    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado",
                                               default_precision="ap_fixed<16,6>")
    cfg["Model"]["ReuseFactor"] = 1
    cfg["Model"]["Strategy"] = "Latency"
    cfg["LayerName"]["output_softmax"]["Strategy"] = "Stable"
    out_dir = out_dir or tempfile.mkdtemp(prefix="svhn_hls_")
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(out_dir), backend="Vivado", part="xcu250-figd2104-2L-e",
        clock_period=5, io_type="io_stream")


def calibration_table(constants: dict | None = None, verbose: bool = False) -> dict:
    """Estimate the tutorial's SVHN CNN and compare with its published HLS and Vivado numbers.

    Returns {"rows": [{quantity, estimate, hls, vivado, error_vs_hls, error_vs_vivado}],
    "estimate": the estimate dict, "seconds"}. Errors are (estimate - published) / published.
    The estimator aims at Vivado synthesis (what the chip holds); HLS csynth LUT counts run
    about 2x higher (STACK.md).
    """
    t0 = time.time()
    est = estimate(convert_svhn(build_svhn_qmodel()), constants=constants)
    rows = []
    for q in ("LUT", "FF", "DSP", "BRAM18", "latency_cycles", "ii_cycles"):
        value = est["total"][q] if q in est["total"] else est[q]
        hls, viv = PUBLISHED_SVHN["hls"].get(q), PUBLISHED_SVHN["vivado"].get(q)
        rows.append({"quantity": q, "estimate": value, "hls": hls, "vivado": viv,
                     "error_vs_hls": (value - hls) / hls if hls else None,
                     "error_vs_vivado": (value - viv) / viv if viv else None})
    out = {"rows": rows, "estimate": est, "seconds": time.time() - t0}
    if verbose:
        print(format_calibration(out))
    return out


def format_calibration(cal: dict) -> str:
    """The calibration rows as a markdown table."""
    def pct(x):
        return "-" if x is None else f"{100 * x:+.0f} %"

    def num(x):
        return "-" if x is None else f"{x:,}"

    lines = ["| quantity | estimate | HLS csynth (published) | error | Vivado synthesis (published) | error |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in cal["rows"]:
        lines.append(f"| {r['quantity']} | {num(r['estimate'])} | {num(r['hls'])} | {pct(r['error_vs_hls'])} "
                     f"| {num(r['vivado'])} | {pct(r['error_vs_vivado'])} |")
    return "\n".join(lines)


def summary_line(est: dict) -> str:
    t = est["total"]
    return (f"{t['LUT']:,} LUT, {t['FF']:,} FF, {t['DSP']:,} DSP, {t['BRAM18']:,} BRAM18; "
            f"II {est['ii_cycles']:,} cycles, latency {est['latency_cycles']:,} cycles "
            f"({est['latency_us']:.2f} us) at {est['clock_mhz']:.0f} MHz; "
            f"{est['patterns_per_s']:,.0f} patterns/s [{est['kind']}]")
