"""Titles' texts (synopses): read, checked and cleaned the same way wherever data comes in.

A title's text comes from a collector (the site's synopsis), a `text` column of a CSV manifest,
or a `synopsis.txt` file in the title's folder of a `ROOT/<author>/<title>/` tree. It is stored
once per title in the catalog (title info `synopsis`). Placeholders count as no text: an empty
synopsis, MyAnimeList's "No synopsis information has been added" (which the collector also
flags), and the like. Splits keep a title's images together, so its text stays on one side.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SYNOPSIS_FILE = "synopsis.txt"  # a title folder's text, in a folder import
TEXT_KEY = "synopsis"  # the title info key in the catalog
PLACEHOLDER_FLAG = "synopsis_placeholder"  # set to "1" by a collector that recognised one
# A synopsis is a few hundred words, but real descriptions run long (Debian's longest package
# description is 80 KB): refuse only what is no synopsis at all (a 10 MB paste, a file dump).
MAX_TEXT_BYTES = 256 * 1024
# Lower-case phrases a site shows in place of a synopsis it does not have.
PLACEHOLDERS = ("no synopsis information has been added", "no synopsis yet", "줄거리 정보가 없습니다")


class TextError(ValueError):
    """A text that cannot be used; str() is one line naming where it came from."""


def clean_text(text: str | None) -> str | None:
    """Whitespace collapsed; None for no text or a placeholder."""
    if text is None:
        return None
    text = re.sub(r"\s+", " ", text).strip()
    if not text or any(phrase in text.lower() for phrase in PLACEHOLDERS):
        return None
    return text


def check_text(text: str, origin: str) -> str | None:
    """A text from a manifest cell or a file, checked: one TextError line when unusable."""
    if len(text.encode("utf-8", errors="replace")) > MAX_TEXT_BYTES:
        raise TextError(f"{origin}: text of {len(text.encode('utf-8', errors='replace')):,} bytes, over "
                        f"the {MAX_TEXT_BYTES // 1024} KB a synopsis may have")
    if "\x00" in text:
        raise TextError(f"{origin}: binary data, not text")
    return clean_text(text)


def read_text_file(path: str | os.PathLike) -> str | None:
    """A title's `synopsis.txt`: UTF-8 text of at most MAX_TEXT_BYTES, cleaned; None if a placeholder."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise TextError(f"{path}: {size:,} bytes, over the {MAX_TEXT_BYTES // 1024} KB a synopsis "
                            "may have")
        data = path.read_bytes()
    except OSError as err:
        raise TextError(f"{path}: cannot be read ({err.strerror or err})") from None
    if b"\x00" in data:
        raise TextError(f"{path}: binary data, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TextError(f"{path}: not UTF-8 text (byte {err.start})") from None
    return check_text(text, str(path))


def usable_text(info: dict[str, str]) -> str | None:
    """A title's text from its catalog info, or None (none stored, or a flagged placeholder)."""
    if info.get(PLACEHOLDER_FLAG) == "1":
        return None
    return clean_text(info.get(TEXT_KEY))
