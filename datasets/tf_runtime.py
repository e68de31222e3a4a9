"""Importing TensorFlow for a command-line tool without its start-up chatter.

TensorFlow writes oneDNN, CPU-feature and "no CUDA driver" notices straight
to file descriptor 2 before its logging is set up, so TF_CPP_MIN_LOG_LEVEL
cannot hide them. CLIs call `import_tensorflow()`; the bundle export wraps
the TFLite converter, which is as chatty, in `quiet_stderr()`. Other library
code imports TensorFlow plainly and leaves the process's streams alone.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

# Start-up notices that say nothing about the user's work; anything else is replayed.
_NOISE = ("absl::InitializeLog", "port.cc", "cpu_feature_guard", "rebuild TensorFlow",
          "To enable the following instructions", "cudart_stub", "cuda_platform", "cuInit",
          "cuda_executor", "cuda_dnn", "cuda_fft", "cuda_blas", "computation_placer",
          # the TFLite converter's
          "node_def_util", "tf_tfl_flatbuffer_helpers", "XNNPACK delegate", "Assets written to",
          "contains input name(s)", "saver.py", "builder_impl", "fingerprinting")


def import_tensorflow(quiet: bool = False) -> ModuleType:
    """TensorFlow, imported with its start-up notices held back. `quiet` (a CLI's --quiet) also
    hides the C++ runtime's ERROR-level notices that come later, during training: they are harmless
    (oneDNN falling back to Eigen without AVX-512, a tf.data attribute newer than the runtime),
    and a real failure still reaches Python as an exception. TF_CPP_MIN_LOG_LEVEL set by the user wins."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if quiet else "1")
    with quiet_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery prints its notices now
    return tf


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hold back TensorFlow's known start-up and converter notices; replay everything else."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not any(marker in line for marker in _NOISE):
                    print(line, file=sys.stderr)
