"""Every registered backbone trains a step, reloads identically and exports to LiteRT; focal loss."""

import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from inference.litert_model import LiteRTModel  # noqa: E402
from models.cosine_margin_loss import CosineMarginLoss  # noqa: E402
from models.registry import backbone_spec, create_backbone, list_backbones  # noqa: E402
from models.saving import load_model  # noqa: E402
from models.style_model import StyleModel  # noqa: E402
from models.supervised_contrastive_loss import SupervisedContrastiveLoss  # noqa: E402
from models.transfer import pretrained_base  # noqa: E402
from tests.conftest import REPO  # noqa: E402


def tiny_size(name: str) -> tuple[int, int]:
    spec = backbone_spec(name)
    side = max(spec.min_size, 24)
    return (side, side)


def test_registry_lists_the_required_backbones():
    assert {"webtoon_cnn", "style_cnn", "mobilenet_v3_small", "efficientnetv2_b0", "resnet50",
            "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(list_backbones())
    assert backbone_spec("webtoon_cnn").default_size == (21, 35)


@pytest.mark.parametrize("name", ["webtoon_cnn", "style_cnn", "mobilenet_v3_small", "efficientnetv2_b0",
                                  "resnet50", "efficientnet_lite0"])
def test_backbone_trains_saves_reloads_and_exports(name, tmp_path):
    keras.utils.set_random_seed(0)
    size = tiny_size(name)
    options = {"filters": (8, 16)} if name == "style_cnn" else {}
    model = StyleModel(create_backbone(name, input_shape=(*size, 3), **options), num_authors=3,
                       num_genres=2, num_titles=4, embedding_dim=16)
    model.compile(optimizer="adam", loss={"author": "sparse_categorical_crossentropy",
                                          "genres": "binary_crossentropy",
                                          "title": CosineMarginLoss(margin=0.2)})
    rng = np.random.default_rng(0)
    x = rng.random((4, *size, 3), dtype=np.float32)
    y = {"author": np.array([0, 1, 2, 0]), "genres": rng.integers(0, 2, (4, 2)).astype("float32"),
         "title": np.array([0, 1, 2, 3]), "embedding": np.zeros((4, 16), "float32")}
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss if np.isscalar(loss) else loss[0])
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights, strict=True))
    model.save(tmp_path / "m.keras")
    reloaded = load_model(tmp_path / "m.keras")
    expected, got = model.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    for key in ("author", "genres", "embedding", "title"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6)
    assert reloaded.get_config()["num_titles"] == 4

    from training.export import serving_model

    serving = serving_model(model)
    serving.export(str(tmp_path / "m.tflite"), format="litert", verbose=False)
    lite = LiteRTModel(tmp_path / "m.tflite")(x)
    cosine = np.sum(lite["embedding"] * expected["embedding"], axis=1)
    assert cosine.min() >= 0.999
    np.testing.assert_allclose(lite["author"], expected["author"], atol=1e-4)


def test_transfer_backbone_loads_a_local_weights_file(tmp_path):
    source = create_backbone("mobilenet_v3_small", input_shape=(32, 32, 3))
    path = tmp_path / "mobilenet_notop.weights.h5"
    pretrained_base(source).save_weights(path)
    loaded = create_backbone("mobilenet_v3_small", input_shape=(32, 32, 3), weights=str(path))
    for a, b in zip(pretrained_base(source).weights, pretrained_base(loaded).weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="no such weights file"):
        create_backbone("mobilenet_v3_small", input_shape=(32, 32, 3), weights=str(tmp_path / "none.h5"))


@pytest.mark.parametrize("pooling", ["gram", "gram+avg", "avgmax"])
def test_pooling_options_reload(pooling, tmp_path):
    model = StyleModel(create_backbone("style_cnn", input_shape=(16, 16, 3), pooling=pooling,
                                       filters=(8, 16)), num_authors=2)
    x = np.random.default_rng(1).random((2, 16, 16, 3), dtype=np.float32)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(x, verbose=0)["embedding"],
                               model.predict(x, verbose=0)["embedding"], atol=1e-6)


def test_gram_blocks_add_early_style_features_and_reload(tmp_path):
    plain = create_backbone("style_cnn", input_shape=(16, 16, 3), pooling="avg", filters=(8, 16))
    styled = create_backbone("style_cnn", input_shape=(16, 16, 3), pooling="avg", filters=(8, 16),
                             gram_blocks=(1,))
    assert styled.output_shape[-1] == plain.output_shape[-1] + 32 * 33 // 2
    model = StyleModel(styled, num_authors=2)
    x = np.random.default_rng(2).random((2, 16, 16, 3), dtype=np.float32)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(x, verbose=0)["embedding"],
                               model.predict(x, verbose=0)["embedding"], atol=1e-6)
    with pytest.raises(ValueError, match="gram_blocks 3 is not a block of style_cnn"):
        create_backbone("style_cnn", input_shape=(16, 16, 3), filters=(8, 16), gram_blocks=(3,))


def test_image_too_small_for_the_depth_fails_clearly():
    with pytest.raises(ValueError, match="image size 8x8 is too small for style_cnn"):
        create_backbone("style_cnn", input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="unknown backbone 'vgg99'"):
        create_backbone("vgg99")


def test_cosine_margin_loss_matches_a_hand_computation():
    scale, margin = 10.0, 0.3
    cosines = np.array([[0.9, 0.1, -0.2], [0.2, 0.4, 0.3]], np.float32)
    labels = np.array([0, 2])
    logits = scale * (cosines - margin * np.eye(3)[labels])
    by_hand = np.mean([np.log(np.exp(row).sum()) - row[y] for row, y in zip(logits, labels, strict=True)])
    loss = CosineMarginLoss(scale, margin)
    assert float(loss(labels, scale * cosines)) == pytest.approx(float(by_hand), rel=1e-5)
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, scale * cosines)
    no_margin = CosineMarginLoss(scale, 0.0)(labels, scale * cosines)
    assert float(no_margin) == pytest.approx(float(plain), rel=1e-5)
    # A validation title in the refit has no class (-1): it adds nothing, where it used to crash
    # the refit of any run whose --val-manifest holds titles unseen in training.
    unknown = CosineMarginLoss(scale, margin)(np.array([0, -1]), scale * cosines)
    alone = CosineMarginLoss(scale, margin)(labels[:1], scale * cosines[:1])
    assert float(unknown) == pytest.approx(float(alone), rel=1e-5)


def test_supervised_contrastive_loss_matches_a_hand_computation():
    """Khosla et al. (2020), eq. 2: each anchor's mean log-softmax of its positives over the rest of
    the batch; -1 is never an anchor or a positive, only a negative; an anchor with no positive adds
    0 to the batch mean."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(7, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1, 1, -1, 2])  # 5 anchors with positives; -1 and 2 have none
    temperature = 0.5
    terms = []
    for i, y in enumerate(labels):
        positives = [j for j in range(7) if j != i and y >= 0 and labels[j] == y]
        if not positives:
            terms.append(0.0)
            continue
        logits = {j: float(vectors[i] @ vectors[j]) / temperature for j in range(7) if j != i}
        log_total = np.log(sum(np.exp(v) for v in logits.values()))
        terms.append(-np.mean([logits[j] - log_total for j in positives]))
    loss = SupervisedContrastiveLoss(temperature)
    assert float(loss(labels, vectors)) == pytest.approx(float(np.mean(terms)), rel=1e-5)
    # Titles pulled together lose less than the same vectors with the labels shuffled apart.
    together = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)
    assert float(loss(np.array([0, 0, 1, 1, 2, 2]), together)) < float(loss(np.array([0, 1, 2, 0, 1, 2]),
                                                                               together))
    assert SupervisedContrastiveLoss.from_config(loss.get_config()).temperature == temperature


def test_a_compiled_checkpoint_reloads_in_a_fresh_process(tmp_path):
    """last.keras keeps the title and descriptor losses; load_model alone must know them (a resumed
    run, a notebook)."""
    model = StyleModel(create_backbone("style_cnn", input_shape=(16, 16, 3), filters=(8, 16)), num_authors=2,
                       num_titles=3, embedding_dim=8, hidden_units=8)
    model.compile(optimizer="adam", loss={"author": "sparse_categorical_crossentropy",
                                          "title": CosineMarginLoss(margin=0.1),
                                          "descriptor": SupervisedContrastiveLoss(0.2)})
    model.save(tmp_path / "last.keras")
    code = f"from models.saving import load_model; load_model({str(tmp_path / 'last.keras')!r})"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_focal_loss_matches_a_hand_computation():
    gamma, alpha = 2.0, 0.25
    truth = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], np.float32)
    p = np.array([[0.9, 0.2, 0.3], [0.6, 0.1, 0.8]], np.float32)
    p_t = np.where(truth == 1, p, 1 - p)
    alpha_t = np.where(truth == 1, alpha, 1 - alpha)
    by_hand = np.mean(-alpha_t * (1 - p_t) ** gamma * np.log(p_t), axis=1).mean()
    loss = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=alpha, gamma=gamma)
    assert float(loss(truth, p)) == pytest.approx(float(by_hand), rel=1e-5)


def test_descriptor_before_relu_keeps_the_heads_and_reloads(tmp_path):
    """The split hidden layer computes what Dense(relu) does; only the descriptor changes, to the
    unit-normalised values before the ReLU. A model saved without the option reloads as before."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).random((3, 16, 16, 3), dtype=np.float32)
    made = {}
    for before_relu in (False, True):
        keras.utils.set_random_seed(0)
        backbone = create_backbone("style_cnn", input_shape=(16, 16, 3), filters=(8, 16))
        made[before_relu] = StyleModel(backbone, num_authors=2, num_genres=2, embedding_dim=8,
                                       hidden_units=12, descriptor_before_relu=before_relu)
    made[True].set_weights(made[False].get_weights())
    plain, split = made[False].predict(x, verbose=0), made[True].predict(x, verbose=0)
    for key in ("author", "genres", "embedding"):
        np.testing.assert_allclose(split[key], plain[key], atol=1e-6)
    features = made[True].backbone.predict(x, verbose=0)
    hidden = made[True].heads.layers_by_name["head_hidden"]  # no bottleneck, no standardising here
    pre = features @ hidden.kernel.numpy() + hidden.bias.numpy()
    unit = pre / np.linalg.norm(pre, axis=1, keepdims=True)
    np.testing.assert_allclose(split["descriptor"], unit, atol=1e-5)
    assert (split["descriptor"] < 0).any() and (plain["descriptor"] >= 0).all()
    for before_relu, model in made.items():
        model.save(tmp_path / f"{before_relu}.keras")
        reloaded = load_model(tmp_path / f"{before_relu}.keras")
        assert reloaded.get_config()["descriptor_before_relu"] is before_relu
        np.testing.assert_allclose(reloaded.predict(x, verbose=0)["descriptor"],
                                   (split if before_relu else plain)["descriptor"], atol=1e-6)
    older = made[False].get_config()
    del older["descriptor_before_relu"]  # a bundle saved before the option existed
    assert StyleModel.from_config(older).descriptor_before_relu is False
