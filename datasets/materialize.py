"""Write the augmented stream to TFRecord shards once, and read it back in later runs.

Batches are written as they come, so memory stays that of one batch whatever
the stream's length. The shards go to a temporary folder that is renamed into
place at the end: a killed run leaves no half-written output under the name.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from datasets.pipeline import BalancedStream

META_FILE = "meta.json"


def materialize(stream: BalancedStream, out_dir: str | os.PathLike, epochs: int = 1, shards: int = 8,
                progress: bool = True) -> dict:
    """Write `epochs` epochs of `stream` as `shards` TFRecord files plus meta.json; returns the meta."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"{out_dir}: already exists; choose a new folder or remove it")
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = [f"part-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
    writers = [tf.io.TFRecordWriter(str(tmp / name)) for name in names]
    total = stream.sampler.epoch_size * epochs
    written = 0
    try:
        with tqdm(total=total, desc="materialize", unit="img", disable=not progress) as bar:
            for images, targets, weights in stream.dataset(epochs):
                pixels = np.round(images.numpy() * 255.0).astype(np.uint8)
                for image, target, weight in zip(pixels, targets.numpy(), weights.numpy(), strict=False):
                    writers[written % shards].write(_example(image, target, weight))
                    written += 1
                bar.update(len(pixels))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for writer in writers:
            writer.close()
    meta = {
        "count": written,
        "epochs": epochs,
        "label_kind": stream.config.label,
        "label_names": stream.label_names,
        "image_size": list(stream.config.image_size),
        "shards": names,
        "achieved_counts": [stream.achieved_counts(e) for e in range(epochs)],
        "balance": asdict(stream.config),
        "augment": asdict(stream.augment),
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out_dir)
    return meta


def read_materialized(folder: str | os.PathLike, batch_size: int = 64) -> tuple[tf.data.Dataset, dict]:
    """The written stream as batches of (images float32 0-1, targets, weights), and its meta."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ValueError(f"{folder}: no {META_FILE}; not a materialized stream")
    meta = json.loads(meta_path.read_text())
    height, width = meta["image_size"]
    n_labels = len(meta["label_names"])
    multi = meta["label_kind"] == "genres"
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "labels": tf.io.VarLenFeature(tf.int64),
        "weight": tf.io.FixedLenFeature([], tf.float32),
    }

    def parse(record: tf.Tensor):
        example = tf.io.parse_single_example(record, spec)
        image = tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), [height, width, 3])
        labels = tf.sparse.to_dense(example["labels"])
        target = (tf.reduce_max(tf.one_hot(labels, n_labels), axis=0) if multi else labels[0])
        return tf.cast(image, tf.float32) / 255.0, target, example["weight"]

    files = [str(folder / name) for name in meta["shards"]]
    dataset = (tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE)
               .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
               .batch(batch_size)
               .prefetch(tf.data.AUTOTUNE))
    return dataset, meta


def _example(image: np.ndarray, target: np.ndarray, weight: float) -> bytes:
    labels = np.flatnonzero(target) if np.ndim(target) else [int(target)]
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in labels])),
        "weight": tf.train.Feature(float_list=tf.train.FloatList(value=[float(weight)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
