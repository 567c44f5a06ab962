"""The QKeras encoder (ccstae/quant/qmodel.py) and pruning (ccstae/quant/prune.py) on a small encoder."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from ccstae.core.errors import UserError
from ccstae.model.network import build_encoder
from ccstae.quant import prune, qmodel

from builders import P, synthetic_patterns, targets


@pytest.fixture(scope="module")
def float_encoder():
    keras.utils.set_random_seed(0)
    enc = build_encoder(P, filters=(4, 8), dense=(16,))
    # A fresh encoder's output layer starts at zero (the identity warp, ccstae/model/network.py); give it
    # weights like a trained one's, so sparsity checks see a dense model before pruning.
    out = enc.get_layer("out")
    out.set_weights([np.random.default_rng(0).normal(0, 0.3, w.shape).astype(np.float32)
                     for w in out.get_weights()])
    return enc


def test_the_qencoder_mirrors_the_float_encoder(float_encoder):
    q = qmodel.build_qencoder(float_encoder)
    names = [layer.name for layer in q.layers]
    assert names == ["pattern", "input_quant", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
                     "dense1", "dense_relu1", "out", "out_quant"]
    for layer in float_encoder.layers:
        for a, b in zip(layer.get_weights(), q.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    kinds = {layer.name: type(layer).__name__ for layer in q.layers}
    assert kinds["conv1"] == "QConv2D" and kinds["dense1"] == "QDense" and kinds["relu1"] == "QActivation"
    summary = qmodel.qencoder_summary(q)
    assert "quantized_relu(8,1)" in summary and "quantized_bits(16,3" in summary and "input_quant" in summary
    # 8-bit weights stay close to the float model on typical inputs.
    x = synthetic_patterns(64)
    yf, yq = float_encoder.predict(x, verbose=0), q.predict(x, verbose=0)
    assert np.abs(yf - yq).max() < 0.1 * np.abs(yf).max() + 0.02
    # Its float twin is the float encoder again.
    twin = qmodel.float_twin(q)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in float_encoder.layers]
    np.testing.assert_allclose(twin.predict(x, verbose=0), yf, rtol=1e-5, atol=1e-6)


def test_input_quantizer_saturates_and_rounds_like_the_spec(float_encoder):
    q = qmodel.build_qencoder(float_encoder)
    iq = q.get_layer("input_quant")
    # Not beyond ~1e5: QKeras' straight-through trick (x + stop_gradient(q(x) - x)) loses the
    # LSB in float32 there (1e6 gives 2.0, outside the range), while the firmware saturates.
    x = np.array([-0.5, 0.0, 0.3, 1.0, 1.5, 2.0, 2.5, 1e3], np.float32)
    y = iq(x).numpy()
    np.testing.assert_array_equal(y, [0, 0, np.round(0.3 * 128) / 128, 1.0, 1.5, 2 - 2 ** -7, 2 - 2 ** -7, 2 - 2 ** -7])
    # Outputs lie on the output quantizer's grid, inside [-8, 8).
    out = q.predict(synthetic_patterns(16), verbose=0)
    np.testing.assert_array_equal(out * 2 ** 12, np.round(out * 2 ** 12))
    assert np.all(out >= -8) and np.all(out < 8)


def test_spec_overrides_and_validation(float_encoder):
    spec = qmodel.QuantSpec(weight_bits=6, overrides={"relu1": {"bits": 6, "integer": 2},
                                                      "conv1": {"weight_bits": 4, "weight_integer": 0}})
    q = qmodel.build_qencoder(float_encoder, spec)
    assert str(q.get_layer("relu1").quantizer) == "quantized_relu(6,2)"
    assert q.get_layer("conv1").kernel_quantizer_internal.bits == 4
    assert q.get_layer("conv2").kernel_quantizer_internal.bits == 6
    with pytest.raises(UserError, match="weight_bits"):
        qmodel.build_qencoder(float_encoder, qmodel.QuantSpec(weight_bits=1))
    with pytest.raises(UserError, match="unknown key"):
        qmodel.build_qencoder(float_encoder, qmodel.QuantSpec(overrides={"conv1": {"bitz": 4}}))


def test_layers_without_a_quantized_twin_are_user_errors():
    inp = keras.Input((P, P, 1), name="pattern")
    x = keras.layers.Conv2D(4, 3, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inp, keras.layers.Dense(4, name="out")(keras.layers.Flatten(name="flatten")(x)))
    with pytest.raises(UserError, match="bn"):
        qmodel.build_qencoder(model)
    inp = keras.Input((P, P, 1), name="pattern")
    x = keras.layers.Activation("tanh", name="t")(keras.layers.Dense(4, name="d")(keras.layers.Flatten()(inp)))
    with pytest.raises(UserError, match="tanh"):
        qmodel.build_qencoder(keras.Model(inp, x))


def test_save_and_load_round_trip(float_encoder, tmp_path):
    q = qmodel.build_qencoder(float_encoder)
    path = tmp_path / "encoder.h5"
    qmodel.save_qencoder(q, path)
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    back = qmodel.load_qencoder(path)
    x = synthetic_patterns(8)
    np.testing.assert_array_equal(q.predict(x, verbose=0), back.predict(x, verbose=0))
    assert qmodel.qencoder_summary(back) == qmodel.qencoder_summary(q)
    with pytest.raises(UserError):
        qmodel.load_qencoder(tmp_path / "missing.h5")


def test_pruning_reaches_the_target_and_survives_strip_and_save(float_encoder, tmp_path):
    q = qmodel.build_qencoder(float_encoder)
    before = prune.sparsity_report(q)  # the output layer starts at zero (identity warp): all zeros there
    x = synthetic_patterns(512, seed=1)
    y = targets(x)
    pruned, _ = prune.prune(q, 0.5, end_step=40)  # 16 batches per epoch: target reached in epoch 3
    pruned.compile(keras.optimizers.Adam(2e-3), "mse")
    pruned.fit(x, y, batch_size=32, epochs=4, callbacks=prune.prune_callbacks(), verbose=0)
    live = prune.sparsity_report(pruned)
    assert set(live) == {"conv1", "conv2", "dense1", "out"}
    for layer, s in live.items():
        assert abs(s - 0.5) < 0.03, (layer, s)
    clean = prune.strip(pruned)
    assert [layer.name for layer in clean.layers] == [layer.name for layer in q.layers]
    assert prune.sparsity_report(clean) == live
    assert all(v >= live[k] for k, v in prune.sparsity_report(clean, quantized=True).items())
    np.testing.assert_array_equal(clean.predict(x[:32], verbose=0), pruned.predict(x[:32], verbose=0))
    qmodel.save_qencoder(clean, tmp_path / "p.h5")
    assert prune.sparsity_report(qmodel.load_qencoder(tmp_path / "p.h5")) == live
    assert prune.sparsity_report(q) == before  # the unpruned model is untouched


def test_pruning_in_a_custom_loop_with_the_step_hook(float_encoder):
    """ccstae/model/train.py's Trainer runs its own loop and calls batch hooks with the global step."""
    q = qmodel.build_qencoder(float_encoder)
    pruned, hook = prune.prune(q, 0.6, end_step=20)
    x = synthetic_patterns(256, seed=2)
    y = targets(x)
    opt = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((pruned(xb, training=True) - yb) ** 2)
        grads = tape.gradient(loss, pruned.trainable_variables)
        opt.apply_gradients(zip(grads, pruned.trainable_variables))

    for i in range(30):
        hook(i)
        step(x[(i % 8) * 32:(i % 8 + 1) * 32], y[(i % 8) * 32:(i % 8 + 1) * 32])
    # Right after an optimizer step the raw kernels are off their masks again; strip masks them.
    report = prune.sparsity_report(prune.strip(pruned))
    for layer, s in report.items():
        assert abs(s - 0.6) < 0.03, (layer, s)
    with pytest.raises(UserError):
        prune.prune(q, 1.0)
