"""Where converted weights and other derived files are cached between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$STYLEFINDER_CACHE, else $XDG_CACHE_HOME/stylefinder, else ~/.cache/stylefinder."""
    if os.environ.get("STYLEFINDER_CACHE"):
        return Path(os.environ["STYLEFINDER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stylefinder"
