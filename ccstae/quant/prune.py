"""Magnitude pruning of the quantized encoder's QConv2D / QDense kernels (tfmot).

    pruned, step_hook = prune(qenc, 0.5, end_step=n)    # wrap the kernels
    ... train, calling step_hook(global_step) before each batch (custom loop),
        or model.fit(..., callbacks=prune_callbacks()) (Keras loop) ...
    clean = strip(pruned)                                # plain QKeras model for hls4ml

Zeros in the kernels are free in hls4ml's Latency strategy: multiplications by a constant
zero are removed at compile time, so sparsity saves DSPs/LUTs directly.
"""
from __future__ import annotations

import numpy as np
from tensorflow import keras

from ccstae.core.errors import UserError
from ccstae.quant import qmodel


def _tfmot():
    import tensorflow_model_optimization as tfmot

    return tfmot


def _is_wrapper(layer) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    return isinstance(layer, PruneLowMagnitude)


def _is_prunable(layer) -> bool:
    return isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))  # QConv2D/QDense subclass these


def schedule(target: float, begin_step: int, end_step: int, frequency: int | None = None):
    """PolynomialDecay from 0 to `target` sparsity between begin_step and end_step.

    tfmot updates the masks only every `frequency` steps, so end_step is moved back onto
    that grid: otherwise the last update happens before end_step, short of the target.
    """
    span = max(1, int(end_step) - int(begin_step))
    frequency = int(frequency or max(1, span // 10))
    end_step = int(begin_step) + frequency * max(1, span // frequency)
    return _tfmot().sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=float(target),
                                                   begin_step=int(begin_step), end_step=end_step,
                                                   frequency=frequency)


def prune(model: keras.Model, target: float = 0.5, begin_step: int = 0, end_step: int = 1000,
          frequency: int | None = None):
    """Wrap every QConv2D/QDense of `model` for pruning to `target` sparsity.

    Returns (pruned_model, step_hook). The pruned model is a new model with copies of the
    weights (`model` is not touched). `step_hook(step)` sets the pruning step of every wrapper:
    call it before each training batch in a custom loop (ccstae/model/train.py's batch_hooks); a
    Keras `fit` uses prune_callbacks() instead.
    """
    if not 0 <= target < 1:
        raise UserError(f"sparsity must be in [0, 1) (got {target})")
    tfmot = _tfmot()
    sched = schedule(target, begin_step, end_step, frequency)

    def clone(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        if _is_prunable(layer):
            return tfmot.sparsity.keras.prune_low_magnitude(fresh, pruning_schedule=sched)
        return fresh

    with keras.utils.custom_object_scope(qmodel.custom_objects()):
        pruned = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            target_layer = pruned.get_layer(_wrapped_name(pruned, layer.name))
            (target_layer.layer if _is_wrapper(target_layer) else target_layer).set_weights(layer.get_weights())
    wrappers = [layer for layer in pruned.layers if _is_wrapper(layer)]

    def step_hook(step: int) -> None:
        for w in wrappers:
            w.pruning_step.assign(int(step))

    step_hook(0)  # tfmot asserts the step is set (>= 0) in every training call
    return pruned, step_hook


def _wrapped_name(model, name: str) -> str:
    """The name of layer `name` in `model`: tfmot renames wrapped layers prune_low_magnitude_<name>."""
    names = {layer.name for layer in model.layers}
    return name if name in names else f"prune_low_magnitude_{name}"


def prune_callbacks() -> list:
    """Callbacks a Keras `fit` of a pruned model needs (the step counter, the final re-mask)."""
    return [_tfmot().sparsity.keras.UpdatePruningStep()]


def _masked_weights(wrapper) -> list[np.ndarray]:
    """The wrapped layer's weights with the current masks applied.

    The optimizer step after a forward pass can move pruned weights off zero again until the
    next forward pass re-masks them, so the masks are applied here, without touching the
    (possibly still training) model.
    """
    masks = {id(w): m for w, m, _ in wrapper.pruning_vars}
    return [v.numpy() * masks[id(v)].numpy() if id(v) in masks else v.numpy() for v in wrapper.layer.weights]


def strip(model: keras.Model) -> keras.Model:
    """A clean QKeras model (no pruning wrappers, original layer names, masked weights).

    A model without wrappers is returned as it is. The result is a new model: stripping a model
    that is still training (to save the best epoch) leaves the training model unchanged.
    """
    if not any(_is_wrapper(layer) for layer in model.layers):
        return model
    # What tfmot's strip_pruning does (unwrap), but into fresh layers: strip_pruning reuses the
    # wrapped layer objects, whose config then does not rebuild (and which would share weights).
    def unwrap(layer):
        inner = layer.layer if _is_wrapper(layer) else layer
        return inner.__class__.from_config(inner.get_config())

    with keras.utils.custom_object_scope(qmodel.custom_objects()):
        clean = keras.models.clone_model(model, clone_function=unwrap)
    for layer in model.layers:
        if not layer.weights:
            continue
        if _is_wrapper(layer):
            clean.get_layer(layer.layer.name).set_weights(_masked_weights(layer))
        else:
            clean.get_layer(layer.name).set_weights(layer.get_weights())
    return clean


def sparsity_report(model: keras.Model, quantized: bool = False) -> dict:
    """{layer name: fraction of zero kernel weights} for the conv/dense layers.

    For a model still wrapped for pruning the masks are applied first, so the report is what
    strip() will give. quantized=True counts zeros after the kernel quantizer, i.e. what the
    firmware holds (small surviving weights may round to zero as well).
    """
    report = {}
    for layer in model.layers:
        inner = layer.layer if _is_wrapper(layer) else layer
        if not _is_prunable(inner):
            continue
        kernel = _masked_weights(layer)[0] if _is_wrapper(layer) else layer.get_weights()[0]
        quantizer = getattr(inner, "kernel_quantizer_internal", None)
        if quantized and quantizer is not None:
            kernel = np.asarray(quantizer(kernel.astype(np.float32)))
        report[inner.name] = float(np.mean(kernel == 0))
    return report
