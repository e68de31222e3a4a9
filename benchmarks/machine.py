"""What a benchmark ran on, for the `machine` field of its JSON.

Cloud machines of one name differ: virtual machines often name their CPU only "AMD EPYC", and
this project's 2-core ones have run today's Keras encoding at 41 and at 52 images/s. The CPU's
family and model numbers (25 and 17: AMD's Zen 4) and its vector instructions say which kind a
figure came from. Imported by the benchmark scripts beside it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Vector instructions that change how fast TensorFlow, XNNPACK and BLAS run: x86's, then Arm's.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "sve")


def machine(**extra) -> dict:
    """Usable cores, CPU model, its vector instructions, Python and OS; `extra` fields after them."""
    fields, flags = _cpuinfo()
    return {
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "cpu_family_model_stepping": [fields.get(k) for k in ("cpu family", "model", "stepping")],
        "vector": [f for f in VECTOR_FLAGS if f in flags],
        "python": platform.python_version(),
        "platform": platform.platform(),
        **extra,
    }


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[dict[str, str], set[str]]:
    """The first processor's fields and flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}, set()
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():  # the first processor's block
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    # "Features": the name Arm kernels give the flags
    return fields, set((fields.get("flags") or fields.get("Features") or "").split())
