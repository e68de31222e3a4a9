"""The fused AdamW gives Keras's AdamW's weights, and a model compiled with it saves and loads."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")


def _fit(optimizer, steps: int = 12):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 40)).astype("float32"), rng.integers(0, 5, 96)
    layers = [keras.Input((40,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(5)]
    model = keras.Sequential(layers)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=steps // 3, verbose=0)
    return model


def test_fused_adamw_takes_the_same_steps_as_keras_adamw(tmp_path):
    from training.fused_adamw import FusedAdamW

    schedule = keras.optimizers.schedules.CosineDecay(2e-2, decay_steps=12)
    plain = _fit(keras.optimizers.AdamW(schedule, weight_decay=0.01))
    fused = _fit(FusedAdamW(schedule, weight_decay=0.01))
    for a, b in zip(plain.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert int(fused.optimizer.iterations) == 12
    fused.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(again.optimizer, FusedAdamW) and int(again.optimizer.iterations) == 12
    for a, b in zip(again.optimizer.variables, fused.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
