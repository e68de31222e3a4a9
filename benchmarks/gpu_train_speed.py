"""Training images/s of our models on whatever accelerator Keras finds; prints one JSON document.

usage: python benchmarks/gpu_train_speed.py [--models style_cnn:64,efficientnetv2_b0:96] [--batch 256]
                                          [--mixed auto] [--jit-compile auto|on|off]

Runs under any Keras 3 backend (KERAS_BACKEND=tensorflow, jax or torch), on synthetic in-memory
batches, so it measures the model's training step, not the input pipeline. Each model is timed in
float32 and in mixed precision (bfloat16 on Ampere and later, float16 before), with XLA where the
backend compiles. The second epoch is timed; the first pays for compilation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

from models.cosine_margin_loss import CosineMarginLoss
from models.registry import create_backbone
from models.style_model import StyleModel
from training.callbacks import EpochClock


def measure(name: str, side: int, policy: str, batch: int, steps: int, jit_compile="auto",
            labels: int = 14, titles: int = 27) -> dict:
    keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = StyleModel(create_backbone(name, input_shape=(side, side, 3)), num_authors=labels,
                       num_titles=titles)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss={"author": "sparse_categorical_crossentropy",
                        "title": CosineMarginLoss(margin=0.2)},
                  jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    count = batch * steps
    x = rng.random((count, side, side, 3), dtype=np.float32)
    y = {"author": rng.integers(0, labels, count), "title": rng.integers(0, titles, count),
         "embedding": np.zeros((count, model.embedding_dim), np.float32)}
    clock = EpochClock()
    model.fit(x, y, batch_size=batch, epochs=2, verbose=0, shuffle=False, callbacks=[clock])
    times = clock.seconds
    keras.mixed_precision.set_dtype_policy("float32")
    return {"model": name, "input": f"{side}x{side}", "policy": policy, "batch": batch,
            "jit_compile": jit_compile, "images_per_second": round(count / times[1]),
            "first_epoch_seconds": round(times[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="style_cnn:64,efficientnetv2_b0:96,mobilenet_v3_small:96")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--mixed", default="auto", help="auto, mixed_bfloat16 or mixed_float16")
    parser.add_argument("--jit-compile", default="auto", choices=("auto", "on", "off"),
                        help="XLA: Keras's choice (auto), or forced on or off")
    args = parser.parse_args()
    backend = keras.backend.backend()
    device = _device_name(backend)
    mixed = args.mixed if args.mixed != "auto" else ("mixed_bfloat16" if _ampere_or_later(backend)
                                                      else "mixed_float16")
    results = []
    jit = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    for item in args.models.split(","):
        name, side = item.split(":")
        for policy in ("float32", mixed):
            results.append(measure(name, int(side), policy, args.batch, args.steps, jit))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "gpu_train_speed", "date": time.strftime("%Y-%m-%d"),
                      "backend": backend, "keras": keras.__version__, "device": device,
                      "cpus": os.cpu_count(), "results": results}, indent=2))


def _device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "cpu"


def _ampere_or_later(backend: str) -> bool:
    name = _device_name(backend).upper()
    return any(tag in name for tag in ("A100", "H100", "H200", "L4", "A10", "RTX 30", "RTX 40", "GH200"))


if __name__ == "__main__":
    main()
