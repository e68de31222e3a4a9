"""AdamW whose Adam step is TensorFlow's fused kernel (`ResourceApplyAdam`) on the TensorFlow backend.

Keras's AdamW updates each weight with about ten element-wise ops, each a pass over the weights in
memory. On stored features the heads' step is small, and on a 2-core CPU those passes are a fixed
cost per step: most of a step at batch 256 (docs/benchmarks.md, catalog scale). The fused kernel does
the same update in one pass. It is the same arithmetic as Keras's Adam (epsilon added to sqrt(v), not
to its bias-corrected form), so results agree to float rounding; the weight decay stays Keras's own
decoupled step. Anything else (another backend, amsgrad, sparse gradients, a distribution strategy
over several devices, where the backbone's step dominates anyway) falls back to Keras's update.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="stylefinder")
class FusedAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with the same arguments and results, faster on TensorFlow."""

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf  # only reached on the TensorFlow backend

        if (keras.backend.backend() != "tensorflow" or self.amsgrad or isinstance(gradient, tf.IndexedSlices)
                or tf.distribute.has_strategy()):  # several devices: Keras's own update, as tested there
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index].value, self._velocities[index].value
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.handle, v=velocity.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))
