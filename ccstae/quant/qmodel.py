"""The QKeras encoder: the float encoder of ccstae/model/network.py, layer for layer, with quantizers.

    pattern -> input_quant -> conv1 -> relu1 -> pool1 -> ... -> flatten
            -> dense1 -> dense_relu1 -> ... -> out -> out_quant

Every arithmetic layer (QConv2D, QDense) is followed by a quantizer (a quantized ReLU, or a
`{name}_quant` QActivation where the float model has none), so the widths hls4ml's bit-exact
pass infers stay bounded (shared/STACK.md). All quantizers are `quantized_bits` /
`quantized_relu` with alpha=1: the bit-exact flow does not support alpha='auto_po2'.

Default fixed-point formats, those of configs/default.toml [quant] (8-bit everywhere but the
16-bit output; "integer" counts the integer bits without the sign, as QKeras does):

| what              | quantizer                                  | range           | step   | [quant] keys                         |
| ----------------- | ------------------------------------------ | --------------- | ------ | ------------------------------------ |
| input x=sqrt(I/s) | quantized_bits(8, 1, keep_negative=False)  | [0, 2)          | 2^-7   | input_bits, input_integer            |
| weights           | quantized_bits(8, 0)                       | [-1, 1)         | 2^-7   | weight_bits                          |
| biases            | quantized_bits(8, 2)                       | [-4, 4)         | 2^-5   | bias_bits                            |
| ReLU outputs      | quantized_relu(8, 1)                       | [0, 2)          | 2^-7   | activation_bits, activation_integer  |
| raw outputs       | quantized_bits(16, 3)                      | [-8, 8)         | 2^-12  | (fixed)                              |

Why: the input is nominally in [0, 1]; one integer bit keeps 1.0 itself and hot pixels up to
2 (they saturate above, as in QKeras) for one bit of resolution. Glorot-initialised and
fine-tuned weights of these small layers sit well inside [-1, 1). The float encoder's ReLU
outputs stay below ~1.5 with means of 0.03-0.1, so [0, 2) keeps 7 fractional bits (a range of
[0, 8) would leave the mean activation at about one LSB; see default.toml). The raw
outputs go through tanh on the host and are kept near [-2.5, 2.5] by the training penalty:
[-8, 8) covers tanh's whole useful domain (tanh(8) = 1 - 2e-7) and 12 fractional bits are far
below any strain resolution; 16 bits is also a natural word on the readout link.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tensorflow import keras

from ccstae.core.schema import fixed_point_problem
from ccstae.core.errors import UserError
from ccstae.model.network import count_macs  # noqa: F401  (re-exported: works on QConv2D/QDense too)

# Keys a per-layer override may set. Activation-like layers (input_quant, relu*, *_quant)
# take bits/integer; QConv2D/QDense take the weight_*/bias_* keys.
ACTIVATION_KEYS = {"bits", "integer"}
KERNEL_KEYS = {"weight_bits", "weight_integer", "bias_bits", "bias_integer"}


@dataclass
class QuantSpec:
    """Bit widths of the quantized encoder. Plain data: `QuantSpec(**json.load(...))` works.

    The defaults are configs/default.toml's [quant] (tests/test_config.py holds them equal);
    pipelines build it with QuantSpec.from_config(cfg["quant"])."""

    input_bits: int = 8
    input_integer: int = 1
    weight_bits: int = 8
    weight_integer: int = 0
    bias_bits: int = 8
    bias_integer: int = 2
    activation_bits: int = 8
    activation_integer: int = 1
    output_bits: int = 16
    output_integer: int = 3
    overrides: dict = field(default_factory=dict)  # {layer_name: {key: value}}, keys above

    @classmethod
    def from_config(cls, q: dict) -> "QuantSpec":
        """From a [quant] section: the keys it has, the defaults above for the rest."""
        return cls(**{f: int(q[f]) for f in cls.__dataclass_fields__ if f != "overrides" and f in q})

    def validate(self) -> None:
        for name in ("input", "weight", "bias", "activation", "output"):
            problem = fixed_point_problem(name, getattr(self, f"{name}_bits"), getattr(self, f"{name}_integer"))
            if problem:
                raise UserError(f"quant spec: {problem}")
        for layer, keys in self.overrides.items():
            unknown = set(keys) - ACTIVATION_KEYS - KERNEL_KEYS
            if unknown:
                raise UserError(f"quant spec override for {layer!r}: unknown key(s) {sorted(unknown)}; "
                                f"use {sorted(ACTIVATION_KEYS | KERNEL_KEYS)}")

    def get(self, layer: str, key: str, default):
        return self.overrides.get(layer, {}).get(key, default)


def _qkeras():
    """QKeras imported late: `import ccstae.quant.qmodel` stays cheap for the CLI's --help."""
    import qkeras

    return qkeras


def custom_objects() -> dict:
    """What keras needs to rebuild a QKeras encoder from its config or an .h5 file."""
    from qkeras.utils import _add_supported_quantized_objects

    objects = {}
    _add_supported_quantized_objects(objects)
    return objects


def _act_quantizer(spec: QuantSpec, name: str, bits: int, integer: int, signed=True):
    q = _qkeras()
    bits, integer = spec.get(name, "bits", bits), spec.get(name, "integer", integer)
    return q.quantized_bits(bits, integer, keep_negative=signed, alpha=1)


def _kernel_layer(layer, spec: QuantSpec):
    """QConv2D / QDense with the float layer's configuration and quantized weights."""
    q = _qkeras()
    name = layer.name
    cfg = layer.get_config()
    if cfg.get("activation", "linear") != "linear":
        raise UserError(f"layer {name}: fused activation {cfg['activation']!r}; the encoder must use a "
                        f"separate Activation layer (ccstae/model/network.py) so it can be quantized")
    kq = q.quantized_bits(spec.get(name, "weight_bits", spec.weight_bits),
                          spec.get(name, "weight_integer", spec.weight_integer), alpha=1)
    bq = q.quantized_bits(spec.get(name, "bias_bits", spec.bias_bits),
                          spec.get(name, "bias_integer", spec.bias_integer), alpha=1)
    if isinstance(layer, keras.layers.Conv2D):
        return q.QConv2D(cfg["filters"], cfg["kernel_size"], strides=cfg["strides"], padding=cfg["padding"],
                         use_bias=cfg["use_bias"], kernel_quantizer=kq, bias_quantizer=bq, name=name)
    return q.QDense(cfg["units"], use_bias=cfg["use_bias"], kernel_quantizer=kq, bias_quantizer=bq, name=name)


def build_qencoder(float_encoder: keras.Model, spec: QuantSpec | None = None) -> keras.Model:
    """A QKeras twin of `float_encoder` (a ccstae/model/network.py encoder) holding its weights."""
    q = _qkeras()
    spec = spec or QuantSpec()
    spec.validate()
    layers = float_encoder.layers
    if not isinstance(layers[0], keras.layers.InputLayer):
        raise UserError(f"{float_encoder.name}: expected an Input layer first (ccstae/model/network.py)")
    inp = keras.Input(shape=float_encoder.input_shape[1:], name=layers[0].name)
    # Input quantizer: unsigned (x = sqrt(I/s) >= 0), saturating like every quantized_bits.
    bits = spec.get("input_quant", "bits", spec.input_bits)
    integer = spec.get("input_quant", "integer", spec.input_integer)
    x = q.QActivation(q.quantized_bits(bits, integer, keep_negative=False, alpha=1), name="input_quant")(inp)
    for i, layer in enumerate(layers[1:], start=1):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            x = _kernel_layer(layer, spec)(x)
            if not isinstance(nxt, keras.layers.Activation):
                # No ReLU follows (the linear `out` layer): quantize here so the width is fixed.
                if nxt is None:
                    quant = _act_quantizer(spec, f"{layer.name}_quant", spec.output_bits, spec.output_integer)
                else:
                    quant = _act_quantizer(spec, f"{layer.name}_quant", spec.activation_bits,
                                           spec.activation_integer)
                x = q.QActivation(quant, name=f"{layer.name}_quant")(x)
        elif isinstance(layer, keras.layers.Activation):
            if layer.get_config()["activation"] != "relu":
                raise UserError(f"layer {layer.name}: activation {layer.get_config()['activation']!r} "
                                f"is not supported on the FPGA side; use relu (tanh stays on the host)")
            bits = spec.get(layer.name, "bits", spec.activation_bits)
            integer = spec.get(layer.name, "integer", spec.activation_integer)
            x = q.QActivation(q.quantized_relu(bits, integer), name=layer.name)(x)
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.Flatten)):
            x = layer.__class__.from_config(layer.get_config())(x)
        else:
            raise UserError(f"layer {layer.name} ({type(layer).__name__}) has no quantized counterpart; "
                            f"the encoder may hold Conv2D, Dense, relu Activation, MaxPooling2D, Flatten")
    qenc = keras.Model(inp, x, name=f"q{float_encoder.name}")
    for layer in float_encoder.layers:
        if layer.weights:
            qenc.get_layer(layer.name).set_weights(layer.get_weights())
    return qenc


def float_twin(qencoder: keras.Model) -> keras.Model:
    """The float encoder a QKeras encoder stands for: same layers and raw (unquantized) weights,
    quantized_relu -> relu, no quantizers. What the firmware would compute with unbounded
    ranges: comparing with it exposes saturation that bit-exactness with QKeras cannot.
    """
    inp = keras.Input(shape=qencoder.input_shape[1:], name=qencoder.layers[0].name)
    x = inp
    for layer in qencoder.layers[1:]:
        cls = type(layer).__name__
        if cls == "QActivation":
            if "relu" in str(layer.quantizer):
                x = keras.layers.Activation("relu", name=layer.name)(x)
            continue  # a quantized_bits quantizer: the identity in float
        cfg = layer.get_config()
        if cls == "QConv2D":
            x = keras.layers.Conv2D(cfg["filters"], cfg["kernel_size"], strides=cfg["strides"],
                                    padding=cfg["padding"], use_bias=cfg["use_bias"], name=layer.name)(x)
        elif cls == "QDense":
            x = keras.layers.Dense(cfg["units"], use_bias=cfg["use_bias"], name=layer.name)(x)
        else:
            x = layer.__class__.from_config(cfg)(x)
    twin = keras.Model(inp, x, name=f"{qencoder.name}_float")
    for layer in twin.layers:
        if layer.weights:
            layer.set_weights(qencoder.get_layer(layer.name).get_weights())
    return twin


def quantizer_of(layer) -> dict:
    """{'kernel': str, 'bias': str} or {'activation': str} for a QKeras layer, {} otherwise."""
    out = {}
    for attr in ("kernel_quantizer", "bias_quantizer"):
        qz = getattr(layer, attr + "_internal", None) or getattr(layer, attr, None)
        if qz is not None and not isinstance(qz, str):
            out[attr.split("_")[0]] = str(qz)
    if type(layer).__name__ == "QActivation":
        out["activation"] = str(layer.quantizer)
    return out


def count_weights(model: keras.Model) -> tuple[int, int]:
    """(kernel weights, non-zero kernel weights) of the conv and dense layers."""
    total = nonzero = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            k = layer.get_weights()[0]
            total += k.size
            nonzero += int(np.count_nonzero(k))
    return total, nonzero


def qencoder_summary(model: keras.Model) -> str:
    """One line per layer: name, class, output shape, quantizers; then totals."""
    lines = [f"{model.name}"]
    for layer in model.layers:
        qs = ", ".join(f"{k}={v}" for k, v in quantizer_of(layer).items()) or "-"
        shape = tuple(layer.output_shape[1:]) if not isinstance(layer.output_shape, list) \
            else tuple(layer.output_shape[0][1:])
        lines.append(f"  {layer.name:<14} {type(layer).__name__:<13} {str(shape):<14} {qs}")
    total, nonzero = count_weights(model)
    lines.append(f"  {model.count_params():,} parameters, {nonzero:,}/{total:,} non-zero kernel weights, "
                 f"{count_macs(model):,} multiplications per pattern (zeros included)")
    return "\n".join(lines)


def save_qencoder(model: keras.Model, path) -> None:
    """Save as Keras HDF5 (quantizers in the config), atomically: temp file, then rename."""
    from ccstae.core.outputs import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        model.save(tmp, save_format="h5", include_optimizer=False)


def load_qencoder(path) -> keras.Model:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such encoder file")
    return keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
