"""The few things a notebook needs that a CLI does not: Colab detection, Drive, showing a picture."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def mount_drive(mountpoint: str = "/content/drive") -> Path:
    """Mount Google Drive on Colab (it asks for permission); elsewhere, say it is unavailable."""
    if not in_colab():
        raise RuntimeError("Google Drive can only be mounted inside Colab; set USE_DRIVE = False")
    from google.colab import drive

    drive.mount(mountpoint)
    return Path(mountpoint) / "MyDrive"


def show(path: str | os.PathLike, width: int = 900) -> None:
    """Display a PNG inline in Jupyter or Colab; outside a notebook, log where it is."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Image(filename=str(path), width=width))
    else:
        log.info("figure: %s", path)
