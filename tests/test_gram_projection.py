"""Projected Gram pooling: the layer computes PᵀGP, the fit finds the mean Gram's leading
eigenvectors, a saved model keeps them, and the feature cache's key follows them."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras

from models.gram_pooling import GramPooling
from models.registry import create_backbone
from models.saving import load_model
from tests.imagegen import style_image
from training.config import ModelConfig
from training.gram_projection import fit_gram_projections, projected_gram_layers, projection_digest
from training.weights_identity import backbone_identity


def _upper(matrix: np.ndarray) -> np.ndarray:
    rows, cols = np.triu_indices(matrix.shape[-1])
    return matrix[..., rows, cols]


def test_a_projected_gram_is_the_gram_of_the_projected_channels():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2, 5, 4, 6)).astype(np.float32)
    projection = np.linalg.qr(rng.normal(size=(6, 3)))[0].astype(np.float32)
    layer = GramPooling(normalize="none", channels=3)
    layer.build(maps.shape)
    layer.set_projection(projection)
    flat = maps.reshape(2, 20, 6)
    full = np.einsum("npc,npd->ncd", flat, flat) / 20
    expected = _upper(np.einsum("ck,ncd,dl->nkl", projection, full, projection))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(maps)), expected, rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape(maps.shape) == (2, 6)
    with pytest.raises(ValueError, match="exceeds the 6 input channels"):
        GramPooling(channels=7).build(maps.shape)


def test_only_taps_wider_than_gram_channels_are_projected():
    backbone = create_backbone("efficientnet_lite0", input_shape=(32, 32, 3), weights="none",
                               style_taps=["group2", "group4", "group5"], gram_channels=48)
    widths = {layer.name: layer.channels for layer in backbone.layers if isinstance(layer, GramPooling)}
    assert widths == {"group2_gram": None, "group4_gram": 48, "group5_gram": 48}
    assert backbone.output_shape[-1] == 24 * 25 // 2 + 2 * (48 * 49 // 2)
    unprojected = create_backbone("efficientnet_lite0", input_shape=(32, 32, 3), weights="none",
                                  style_taps=["group5"], gram_channels=None)
    assert unprojected.output_shape[-1] == 112 * 113 // 2


def test_the_fit_keeps_the_mean_grams_leading_eigenvectors_and_survives_saving(tmp_path):
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        style_image(i % 3, i, 32).save(paths[-1])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    backbone = create_backbone("efficientnet_lite0", input_shape=(32, 32, 3), style_taps=["group4"],
                               gram_channels=8)
    before = projection_digest(backbone)
    fitted = fit_gram_projections(backbone, [*paths, tmp_path / "bad.png"], (32, 32), seed=0)
    assert set(fitted) == {"group4_gram"} and fitted["group4_gram"].shape == (80, 8)
    assert projection_digest(backbone) != before
    layer = projected_gram_layers(backbone)[0]
    taps = keras.Model(backbone.input, layer.input)
    images = np.stack([np.asarray(style_image(i % 3, i, 32), np.float32) / 255.0 for i in range(6)])
    maps = taps.predict(images, verbose=0).reshape(6, -1, 80).astype(np.float64)
    mean_gram = np.einsum("npc,npd->cd", maps, maps) / maps.shape[1] / 6
    values, vectors = np.linalg.eigh(mean_gram)
    leading = vectors[:, np.argsort(values)[::-1][:8]]
    # The same subspace (signs and order within equal eigenvalues aside).
    np.testing.assert_allclose(np.abs(leading.T @ fitted["group4_gram"]).max(axis=1), 1.0, atol=1e-3)
    wrapper = keras.Model(backbone.input, backbone.output)
    wrapper.save(tmp_path / "b.keras")
    reloaded = load_model(tmp_path / "b.keras", compile=False)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), wrapper.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_the_feature_cache_key_follows_the_projection():
    config = ModelConfig()
    assert backbone_identity(config, (32, 32), 0, "aaaa") != backbone_identity(config, (32, 32), 0, "bbbb")


def test_run_features_from_stored_grams_are_the_projected_grams_of_the_same_maps():
    """RunFeatures (the front of a two-stage bundle's heads) turns the full Gram upper triangles
    the store keeps into what GramPooling with the projection computes from the feature maps;
    other parts pass through; its config rebuilds it."""
    from models.run_features import RunFeatures

    rng = np.random.default_rng(1)
    maps = {"a": rng.normal(size=(3, 4, 4, 5)).astype(np.float32),
            "b": rng.normal(size=(3, 2, 2, 7)).astype(np.float32)}
    projection = np.linalg.qr(rng.normal(size=(7, 3)))[0].astype(np.float32)
    flat = {k: v.reshape(3, -1, v.shape[-1]) for k, v in maps.items()}
    stored = np.concatenate([_upper(np.einsum("npc,npd->ncd", f, f) / f.shape[1]) for f in flat.values()]
                            + [maps["a"].mean(axis=(1, 2))], axis=1)
    layout = [{"name": "a", "kind": "gram", "channels": 5, "width": 15},
              {"name": "b", "kind": "gram", "channels": 7, "width": 28},
              {"name": "pooled", "kind": "avg", "width": 5}]
    layer = RunFeatures(layout, {"b": 3})
    layer.build((None, stored.shape[1]))
    layer.set_projections({"b": projection})
    pooled = GramPooling(normalize="none", channels=3)
    pooled.build(maps["b"].shape)
    pooled.set_projection(projection)
    got = keras.ops.convert_to_numpy(layer(stored))
    assert got.shape == (3, 15 + 6 + 5) == (3, layer.compute_output_shape((None, 48))[1])
    np.testing.assert_allclose(got[:, :15], stored[:, :15])
    np.testing.assert_allclose(got[:, 15:21], keras.ops.convert_to_numpy(pooled(maps["b"])), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(got[:, 21:], stored[:, 43:])
    assert RunFeatures.from_config(layer.get_config()).projected == {"b": 3}
    with pytest.raises(ValueError, match="'pooled' is not a Gram part"):
        RunFeatures(layout, {"pooled": 2})
