"""String-keyed registry of backbones: `create_backbone("style_cnn", ...)`.

A backbone maps images (float32, 0-1, [H, W, 3]) to one feature vector per
image. Builders register themselves with `@register_backbone`; the built-in
modules are imported on first use, not when `models` is imported, and import Keras only
inside their builders: what a backbone is (sizes, options, defaults, the store encoder it
names) is known without starting TensorFlow.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

_BUILTIN_MODULES = ("models.webtoon_cnn", "models.style_cnn", "models.transfer", "models.lite_backbones")


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable[..., object]  # (input_shape, pooling, weights, **options) -> keras.Model
    default_size: tuple[int, int]  # (height, width)
    min_size: int  # smallest side the architecture accepts
    transfer: bool  # pretrained on ImageNet: train the head first, then fine-tune
    description: str
    # (**options) -> None: raises ValueError for option values the builder would reject,
    # so that a bad config fails before any data is read.
    check: Callable[..., None] | None = None
    default_pooling: str = "avg"
    default_weights: str | None = None  # what `weights=None` means: "imagenet" where no download is needed


_BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, default_size: tuple[int, int], min_size: int, transfer: bool = False,
                      description: str = "", check: Callable[..., None] | None = None,
                      default_pooling: str = "avg", default_weights: str | None = None):
    def add(build):
        _BACKBONES[name] = BackboneSpec(name, build, default_size, min_size, transfer,
                                        description or (build.__doc__ or "").strip().splitlines()[0], check,
                                        default_pooling, default_weights)
        return build
    return add


def list_backbones() -> list[str]:
    _load_builtin()
    return sorted(_BACKBONES)


def backbone_spec(name: str) -> BackboneSpec:
    _load_builtin()
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(sorted(_BACKBONES))}")
    return _BACKBONES[name]


def create_backbone(name: str, input_shape: tuple[int, int, int] | None = None, pooling: str | None = None,
                    weights: str | None = None, **options):
    """Build a registered backbone; `input_shape` defaults to its own (height, width, 3).

    `pooling` and `weights` default to the backbone's own; `weights="none"` asks for random
    initial weights where the backbone would load pretrained ones.
    """
    spec = backbone_spec(name)
    shape = input_shape or (*spec.default_size, 3)
    check_size(spec, shape[:2])
    check_options(spec, options)
    return spec.build(input_shape=shape, pooling=pooling or spec.default_pooling,
                      weights=resolve_weights(spec, weights), **options)


def resolve_weights(spec: BackboneSpec, weights: str | None) -> str | None:
    if weights is None:
        return spec.default_weights
    return None if str(weights).lower() == "none" else weights


def check_size(spec: BackboneSpec, size: tuple[int, int]) -> None:
    if min(size) < spec.min_size:
        raise ValueError(f"image size {size[0]}x{size[1]} is too small for {spec.name}: "
                         f"it needs at least {spec.min_size}x{spec.min_size}")


def check_options(spec: BackboneSpec, options: dict) -> None:
    """Options the builder does not take, or whose values it would reject, fail here as one ValueError."""
    accepted = [n for n in inspect.signature(spec.build).parameters
                if n not in ("input_shape", "pooling", "weights")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{spec.name} has no option {unknown[0]!r}; its options: {', '.join(accepted)}")
    if spec.check:
        spec.check(**options)


def _load_builtin() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
