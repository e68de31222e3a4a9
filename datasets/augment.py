"""Batch augmentations for style, driven by per-sample uniform draws.

Every sample carries its own draws (`params`, uniform in [0, 1), one column per
augmentation parameter), made by the sampler from the seed and epoch. The ops
here are pure functions of (images, params), so a sample's augmentation does
not depend on its batch, and the same call gives the same result eagerly and
inside `Dataset.map`.

Three kinds of op, so that XLA can fuse the whole augmentation into one loop:
- geometric (flip, rotate, zoom, translate, pixel_shift) each give a matrix; their product
  is applied in one bilinear resampling pass written with plain gathers
  (TensorFlow's ImageProjectiveTransform kernel was 2.4x slower on the CPU);
- linear (contrast, brightness) each give a per-sample gain and bias;
- image ops (hue, saturation; off by default) transform whole images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from datasets.config import AugmentConfig

# Columns of `params`, one per random draw.
PARAM_COLUMNS = ("flip_x", "flip_y", "rotate", "zoom", "shift_x", "shift_y", "brightness",
                 "contrast", "hue", "saturation")
N_PARAMS = len(PARAM_COLUMNS)
_COLUMN = {name: i for i, name in enumerate(PARAM_COLUMNS)}


@dataclass(frozen=True)
class Augmentation:
    name: str
    enabled: Callable[[AugmentConfig], bool]
    # geometric: (params, config, height, width) -> [B, 3, 3] output->input matrices
    # linear: (params, config, mean [B]) -> (gain [B], bias [B]), pixel -> gain * pixel + bias
    # image: (images, params, config) -> images
    apply: Callable[..., tf.Tensor]
    kind: str


AUGMENTATIONS: dict[str, Augmentation] = {}


def register(name: str, enabled: Callable[[AugmentConfig], bool], kind: str = "image"):
    def add(fn):
        AUGMENTATIONS[name] = Augmentation(name, enabled, fn, kind)
        return fn
    return add


def _draw(params: tf.Tensor, column: str, spread: float) -> tf.Tensor:
    """A per-sample value uniform in [-spread, spread)."""
    return (params[:, _COLUMN[column]] * 2.0 - 1.0) * spread


def _centred(matrices: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Conjugate per-sample matrices so they act about the image centre."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    to_centre = tf.constant([[1, 0, cx], [0, 1, cy], [0, 0, 1]], tf.float32)
    from_centre = tf.constant([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], tf.float32)
    return to_centre @ matrices @ from_centre


def _matrices(rows: list[list[tf.Tensor]]) -> tf.Tensor:
    return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2)


def _shift_matrices(dx: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """Output pixel (x, y) samples the input at (x - dx, y - dy)."""
    zero, one = tf.zeros_like(dx), tf.ones_like(dx)
    return _matrices([[one, zero, -dx], [zero, one, -dy], [zero, zero, one]])


def _flip_wanted(c: AugmentConfig) -> bool:
    return c.flip != "none"


def _positive(field: str) -> Callable[[AugmentConfig], bool]:
    """The augmentation is on when its config field is above zero."""
    def wanted(c: AugmentConfig) -> bool:
        return getattr(c, field) > 0
    return wanted


@register("flip", _flip_wanted, kind="geometric")
def flip(params: tf.Tensor, config: AugmentConfig, height: int, width: int) -> tf.Tensor:
    one = tf.ones_like(params[:, 0])
    sx = tf.where(params[:, _COLUMN["flip_x"]] < 0.5, -one, one)
    sy = one
    if config.flip == "both":
        sy = tf.where(params[:, _COLUMN["flip_y"]] < 0.5, -one, one)
    zero = tf.zeros_like(one)
    return _centred(_matrices([[sx, zero, zero], [zero, sy, zero], [zero, zero, one]]), height, width)


@register("rotate", _positive("rotation_degrees"), kind="geometric")
def rotate(params: tf.Tensor, config: AugmentConfig, height: int, width: int) -> tf.Tensor:
    angle = _draw(params, "rotate", math.radians(config.rotation_degrees))
    cos, sin, zero, one = tf.cos(angle), tf.sin(angle), tf.zeros_like(angle), tf.ones_like(angle)
    return _centred(_matrices([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]]), height, width)


@register("zoom", _positive("zoom"), kind="geometric")
def zoom(params: tf.Tensor, config: AugmentConfig, height: int, width: int) -> tf.Tensor:
    # Output pixels sample the input at 1/scale: a scale above 1 crops in.
    inverse = 1.0 / (1.0 + _draw(params, "zoom", config.zoom))
    zero, one = tf.zeros_like(inverse), tf.ones_like(inverse)
    return _centred(_matrices([[inverse, zero, zero], [zero, inverse, zero], [zero, zero, one]]),
                    height, width)


@register("translate", _positive("translation"), kind="geometric")
def translate(params: tf.Tensor, config: AugmentConfig, height: int, width: int) -> tf.Tensor:
    dx = _draw(params, "shift_x", config.translation) * width
    dy = _draw(params, "shift_y", config.translation) * height
    return _shift_matrices(dx, dy)


@register("pixel_shift", _positive("pixel_shift"), kind="geometric")
def pixel_shift(params: tf.Tensor, config: AugmentConfig, height: int, width: int) -> tf.Tensor:
    # Integers drawn evenly from -n..n; whole-pixel offsets make the bilinear taps exact copies.
    span = 2 * config.pixel_shift + 1
    dx = tf.minimum(tf.floor(params[:, _COLUMN["shift_x"]] * span), span - 1) - config.pixel_shift
    dy = tf.minimum(tf.floor(params[:, _COLUMN["shift_y"]] * span), span - 1) - config.pixel_shift
    return _shift_matrices(dx, dy)


@register("contrast", _positive("contrast"), kind="linear")
def contrast(params: tf.Tensor, config: AugmentConfig, mean: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    factor = 1.0 + _draw(params, "contrast", config.contrast)
    return factor, mean * (1.0 - factor)


@register("brightness", _positive("brightness"), kind="linear")
def brightness(params: tf.Tensor, config: AugmentConfig, mean: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.ones_like(mean), _draw(params, "brightness", config.brightness)


@register("hue", _positive("hue"))
def hue(images: tf.Tensor, params: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    hsv = tf.image.rgb_to_hsv(tf.clip_by_value(images, 0.0, 1.0))
    shifted = tf.math.floormod(hsv[..., 0] + _draw(params, "hue", config.hue)[:, None, None], 1.0)
    return tf.image.hsv_to_rgb(tf.stack([shifted, hsv[..., 1], hsv[..., 2]], axis=-1))


@register("saturation", _positive("saturation"))
def saturation(images: tf.Tensor, params: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    hsv = tf.image.rgb_to_hsv(tf.clip_by_value(images, 0.0, 1.0))
    factor = 1.0 + _draw(params, "saturation", config.saturation)[:, None, None]
    saturated = tf.clip_by_value(hsv[..., 1] * factor, 0.0, 1.0)
    return tf.image.hsv_to_rgb(tf.stack([hsv[..., 0], saturated, hsv[..., 2]], axis=-1))


def augment_batch(images: tf.Tensor, params: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """images: uint8 [B, H, W, 3] (or float32 in [0, 1]); params: float32 [B, N_PARAMS].

    Returns float32 in [0, 1].
    """
    scale = 255.0 if images.dtype == tf.uint8 else 1.0
    height, width = images.shape[1], images.shape[2]
    active = [a for a in AUGMENTATIONS.values() if a.enabled(config)]
    linear = [a for a in active if a.kind == "linear"]
    if linear:
        # Contrast pivots on the mean of the original picture: one cheap pass
        # over the input, so the rest fuses into one loop with the warp.
        mean = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3]) / scale
    geometric = [a for a in active if a.kind == "geometric"]
    if geometric:
        matrix = geometric[0].apply(params, config, height, width)
        for op in geometric[1:]:
            matrix = matrix @ op.apply(params, config, height, width)
        images = warp_bilinear(images, matrix, config.fill_value * scale)
    gain, bias = tf.fill([tf.shape(params)[0]], 1.0 / scale), tf.zeros([tf.shape(params)[0]])
    for op in linear:
        op_gain, op_bias = op.apply(params, config, mean)
        gain, bias = op_gain * gain, op_gain * bias + op_bias
    images = tf.cast(images, tf.float32) * gain[:, None, None, None] + bias[:, None, None, None]
    for op in active:
        if op.kind == "image":
            images = op.apply(images, params, config)
    return tf.clip_by_value(images, 0.0, 1.0)


def make_augmenter(config: AugmentConfig) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """`augment_batch` for one config, compiled with XLA; use the same one eagerly and in tf.data."""
    return tf.function(lambda images, params: augment_batch(images, params, config), jit_compile=True,
                       autograph=False)


def warp_bilinear(images: tf.Tensor, matrix: tf.Tensor, fill_value: float) -> tf.Tensor:
    """Sample each image at matrix @ (x, y, 1) of every output pixel; outside is `fill_value`.

    Returns float32 on the input's scale. The images are padded with the fill
    colour (one pixel before, two after) and coordinates clamped into the
    padding, so no tap needs an inside test; gathering uint8 keeps the memory
    traffic low.
    """
    batch, height, width, channels = (tf.shape(images)[0], images.shape[1], images.shape[2],
                                      images.shape[3])
    padded_h, padded_w = height + 3, width + 3
    padded = tf.pad(images, [[0, 0], [1, 2], [1, 2], [0, 0]],
                    constant_values=tf.cast(fill_value, images.dtype))
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32),
                         indexing="ij")
    grid = tf.stack([tf.reshape(xs, [-1]), tf.reshape(ys, [-1]), tf.ones([height * width])])
    source = tf.einsum("bij,jk->bik", matrix, grid)
    x = tf.clip_by_value(source[:, 0] / source[:, 2] + 1.0, 0.0, width + 1.0)
    y = tf.clip_by_value(source[:, 1] / source[:, 2] + 1.0, 0.0, height + 1.0)
    x0, y0 = tf.floor(x), tf.floor(y)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    index = ((tf.range(batch) * padded_h * padded_w)[:, None]
             + tf.cast(y0, tf.int32) * padded_w + tf.cast(x0, tf.int32))
    pixels = tf.reshape(padded, [-1, channels])

    def tap(offset: int) -> tf.Tensor:
        return tf.cast(tf.gather(pixels, index + offset), tf.float32)

    top = tap(0) * (1 - wx) + tap(1) * wx
    bottom = tap(padded_w) * (1 - wx) + tap(padded_w + 1) * wx
    return tf.reshape(top * (1 - wy) + bottom * wy, [batch, height, width, channels])
