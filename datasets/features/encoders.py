"""What an encoder is, and running one: a LiteRT network from images to one feature vector.

An encoder's key is a digest of its identity (backbone, weights digest, input size, the
statistics it outputs, the installed resize's fingerprint, `FEATURE_VERSION`) and of nothing
about a run: a new split, subset or Gram projection of stored images reuses their features.
The identity and the network live in the store (`encoders/<key>.json`, `encoders/<key>.tflite`),
so every worker of every engine runs the same file; training writes them
(`training.style_encoder`), and nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import PIL

from datasets.features.store import FeatureStore, StoreError
from datasets.images import resize_fingerprint

FEATURE_VERSION = 1  # bump when what an encoder outputs changes for the same identity
BATCH = 16  # images per call of a caller's own encoder (Keras on a GPU, a bundle's whole model)
# Images per call of a single-threaded LiteRT lane. Small batches keep each layer's activations in
# cache: one lane runs 92-95 img/s at 1 against 74-79 at 16 (docs/benchmarks.md, tenth session).
LANE_BATCH = 1


def encoder_key(identity: dict) -> str:
    text = json.dumps({**identity, "feature_version": FEATURE_VERSION}, sort_keys=True, default=list)
    return "enc-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def other_resizes(root: str | os.PathLike, identity: dict) -> dict[str, str | None]:
    """The store's encoders that are `identity` but for the resize, by key, with the resize they
    recorded (None: made before encoders recorded one). Made where Pillow resizes otherwise, or
    not known to resize alike, their rows are not this machine's to share."""
    found = {}
    resize = identity.get("resize")
    for path in sorted(Path(root, "encoders").glob("enc-*.json")):
        try:
            other = json.loads(path.read_text()).get("identity", {})
        except (OSError, ValueError, AttributeError):
            continue
        if other.get("resize") != resize and {**other, "resize": resize} == identity:
            found[path.stem] = other.get("resize")
    return found


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder registered in a store: `layout` lists its output's parts as
    {"name", "kind": "gram"|"mean_std"|"avg", "width", "channels"} in order."""

    key: str
    identity: dict
    size: tuple[int, int]
    dim: int
    layout: tuple[dict, ...]
    root: Path
    dtype: str = "float16"  # what the shards hold: float32 where outputs meet thresholds

    @property
    def tflite_path(self) -> Path:
        return self.root / "encoders" / f"{self.key}.tflite"

    @property
    def json_path(self) -> Path:
        return self.root / "encoders" / f"{self.key}.json"

    def to_json(self) -> dict:
        return {"key": self.key, "identity": self.identity, "size": list(self.size), "dim": self.dim,
                "layout": list(self.layout), "dtype": self.dtype}

    def save(self) -> None:
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_name(f".{self.json_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, self.json_path)

    @classmethod
    def load(cls, store: FeatureStore | str | os.PathLike, key: str) -> EncoderSpec:
        root = store.root if isinstance(store, FeatureStore) else Path(store)
        path = root / "encoders" / f"{key}.json"
        try:
            data = json.loads(path.read_text())
            return cls(data["key"], data["identity"], tuple(data["size"]), int(data["dim"]),
                       tuple(data["layout"]), root, str(data.get("dtype", "float16")))
        except FileNotFoundError:
            raise StoreError(f"{path}: no such encoder in the store") from None
        except (ValueError, KeyError, TypeError) as err:
            raise StoreError(f"{path}: not an encoder description ({err})") from None

    def ready(self) -> bool:
        return self.json_path.is_file() and self.tflite_path.is_file()

    @property
    def same_resize(self) -> bool | None:
        """Whether this machine resizes images as the one that made the encoder did
        (`resize_fingerprint`); None for an encoder made before the fingerprint was recorded."""
        made = self.identity.get("resize")
        return None if made is None else made == resize_fingerprint(tuple(self.size))

    def check_resize(self) -> None:
        """Refuse to encode into the store on a machine whose image resize differs from the one
        that made this encoder: its features would not match the stored ones."""
        if self.same_resize is False:
            raise StoreError(
                f"{self.json_path}: this machine resizes images differently from the one that made "
                f"the encoder (resize {resize_fingerprint(tuple(self.size))} with Pillow {PIL.__version__}, "
                f"the encoder's {self.identity['resize']}), so "
                "its features would not match the stored ones; install the Pillow release it was made with"
            )

    def registered_in(self, root: str | os.PathLike) -> EncoderSpec:
        """This encoder in the store at `root`, its files copied there if it lacks them (a
        two-stage bundle's encoder, whose rows are then shared with training's). A bundle made
        where Pillow resizes otherwise is registered under this machine's resize, a key of its
        own: its rows here are this machine's, and never mixed with the maker's."""
        spec = replace(self, root=Path(root))
        if self.same_resize is False:
            identity = {**self.identity, "resize": resize_fingerprint(tuple(self.size))}
            spec = replace(spec, key=encoder_key(identity), identity=identity)
        if not spec.ready():
            spec.tflite_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = spec.tflite_path.with_name(f".{spec.key}.{os.getpid()}.tmp")
            shutil.copyfile(self.tflite_path, tmp)
            os.replace(tmp, spec.tflite_path)
            spec.save()
        return spec


def ready_encoder(root: str | os.PathLike, key: str) -> EncoderSpec | None:
    """The store's encoder `key`, if it was converted and checked; None otherwise."""
    try:
        spec = EncoderSpec.load(root, key)
    except StoreError:
        return None
    return spec if spec.ready() else None


class LiteRTEncoder:
    """uint8 images [n, H, W, 3] -> float32 features [n, dim], with the spec's LiteRT network."""

    def __init__(self, spec: EncoderSpec, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        from datasets.tf_runtime import quiet_stderr

        self.spec = spec
        try:
            # XNNPACK announces itself on stderr when the first call applies it: that call is made
            # here, on a blank image, and not later in a lane where stderr cannot be held back.
            with quiet_stderr():
                self.interpreter = Interpreter(model_path=str(spec.tflite_path),
                                               num_threads=threads or os.cpu_count() or 1)
                self.runner = self.interpreter.get_signature_runner()
                self.input_name = next(iter(self.runner.get_input_details()))
                self.output_name = next(iter(self.runner.get_output_details()))
                self(np.zeros((1, *spec.size, 3), np.uint8))
        except (ValueError, RuntimeError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise StoreError(f"{spec.tflite_path}: not a valid LiteRT model ({reason})") from None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        # One pass, the same float32 quotients as converting and then dividing.
        batch = np.divide(images, np.float32(255.0), dtype=np.float32)
        with np.errstate(all="ignore"):
            return np.asarray(self.runner(**{self.input_name: batch})[self.output_name], np.float32)
