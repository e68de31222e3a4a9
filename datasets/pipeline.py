"""The balanced, augmented tf.data stream that training reads.

Per batch: the sampler's plan gives image indices and augmentation draws (the
shuffle is over indices into the file list, never over decoded pixels); a
parallel map gathers those originals from the decoded-image file and augments
them as one batch; prefetch keeps batches ready. Nothing augmented is stored,
so memory stays flat whatever `per_label` is.

The same stream serves rows of cached features (`rows=`, a [n, dim] array, memory-mapped):
batches are then gathered and balanced the same way, and not augmented.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from datasets.augment import N_PARAMS, make_augmenter
from datasets.config import AugmentConfig, BalanceConfig
from datasets.decoded_cache import DecodedImages, decode_all
from datasets.sampling import BalancedSampler, EpochPlan, LabelledImages


class BalancedStream:
    """Batches of (images float32 [B,H,W,3] in 0-1, targets, sample weights)."""

    def __init__(self, data: LabelledImages, config: BalanceConfig | None = None,
                 augment: AugmentConfig | None = None, cache_dir: str | os.PathLike = "data/cache",
                 progress: bool = True, extra_targets: dict[str, np.ndarray] | None = None,
                 rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
        """`extra_targets` (name -> array indexed like data.paths) makes targets a dict:
        {data.kind: the balanced label, **extra}, for models with several heads. `rows`
        (source, usable, index) replaces decoding: data.paths[i] is source[index[i]], decoded
        pixels [n, H, W, 3] or features [n, dim] read already, and usable[i] says if it was read."""
        self.config = config or BalanceConfig()
        self.augment = augment or AugmentConfig()
        if not data.paths:
            raise ValueError(f"no images with a {data.kind} label to train on")
        if rows is None:
            self.decoded: DecodedImages | None = decode_all(
                data.paths, self.config.image_size, Path(cache_dir), self.config.decode_threads,
                progress=progress)
            self.source, usable = self.decoded.pixels, self.decoded.usable
            self.source_index = np.arange(len(data.paths))
        else:
            self.decoded = None
            self.source, usable, self.source_index = rows
        self.sampler = BalancedSampler(data, self.config, usable)
        self.targets = self.sampler.targets()
        self.extra_targets = dict(extra_targets or {})

    @property
    def label_names(self) -> list[str]:
        return self.sampler.label_names

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.sampler.epoch_size // self.config.batch_size)

    def plan(self, epoch: int) -> EpochPlan:
        return self.sampler.plan(epoch, N_PARAMS)

    def achieved_counts(self, epoch: int = 0) -> dict[str, float]:
        return self.sampler.achieved_counts(self.plan(epoch))

    def dataset(self, epochs: int = 1, start_epoch: int = 0) -> tf.data.Dataset:
        """Epochs `start_epoch` to `epochs - 1`, back to back; each replays exactly on resume."""
        height, width = self.config.image_size
        target_spec = (tf.TensorSpec([None], tf.int64) if self.targets.ndim == 1
                       else tf.TensorSpec([None, self.targets.shape[1]], tf.float32))
        def plan_arrays(epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            plan = self.plan(int(epoch))
            return plan.image_index, plan.params, plan.weight

        def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
            # One Python call per epoch makes the plan; batching it is then all in-graph.
            index, params, weight = tf.numpy_function(
                plan_arrays, [epoch], (tf.int64, tf.float32, tf.float32), stateful=False)
            index = tf.ensure_shape(index, [None])
            params = tf.ensure_shape(params, [None, N_PARAMS])
            weight = tf.ensure_shape(weight, [None])
            return tf.data.Dataset.from_tensor_slices((index, params, weight)).batch(
                self.config.batch_size)

        plans = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_batches)
        targets = tf.constant(self.targets)
        extra = {name: tf.constant(values) for name, values in self.extra_targets.items()}
        source, source_index = self.source, self.source_index
        features = source.ndim == 2
        augmenter = None if features else make_augmenter(self.augment)

        def gather(index: np.ndarray) -> np.ndarray:
            rows = np.asarray(source[source_index[index]])
            return rows.astype(np.float32) if features else rows

        def load_and_augment(index, params, weight):
            if features:
                images = tf.numpy_function(gather, [index], tf.float32, stateful=False)
                images = tf.ensure_shape(images, [None, source.shape[1]])
            else:
                images = tf.numpy_function(gather, [index], tf.uint8, stateful=False)
                images = tf.ensure_shape(images, [None, height, width, 3])
                images = augmenter(images, params)
            target = tf.ensure_shape(tf.gather(targets, index), target_spec.shape)
            if extra:
                target = {self.sampler.config.label: target,
                          **{name: tf.gather(values, index) for name, values in extra.items()}}
            return images, target, weight

        options = tf.data.Options()
        options.deterministic = True
        options.autotune.ram_budget = self.config.ram_budget_mb * 2**20
        return (plans.map(load_and_augment, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE)
                .with_options(options))
