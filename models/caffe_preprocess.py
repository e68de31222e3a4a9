"""ResNet50's ImageNet input convention, as a layer so that saved models carry it."""

from __future__ import annotations

import keras
from keras import ops

# ImageNet channel means in BGR order, on the 0-255 scale.
_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="stylefinder")
class CaffePreprocess(keras.layers.Layer):
    """RGB in [0, 1] -> BGR in [0, 255] minus the ImageNet mean."""

    def call(self, images):
        bgr = ops.flip(ops.cast(images, self.compute_dtype) * 255.0, axis=-1)
        return bgr - ops.convert_to_tensor(_BGR_MEAN, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
