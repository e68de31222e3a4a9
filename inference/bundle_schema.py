"""Validation of bundle.json: every key, its type, and the lengths that must agree.

A bundle.json that is valid JSON but wrong (a key missing or unknown, a string where a list
belongs, thresholds that do not match the genres) would otherwise surface as a traceback
deep in a query. `check_manifest` names the file and the first bad key in one line.
"""

from __future__ import annotations

from pathlib import Path


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _list_of(check):
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


def _is_size(value) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def _is_open_set(value) -> bool:
    return isinstance(value, dict) and all(_is_str(k) and _is_number(v) for k, v in value.items())


# key -> (check, what the key must be); every key is required.
FIELDS = {
    "format": (_is_count, "an integer"),
    "name": (_is_str, "a string"),
    "version": (_is_str, "a string"),
    "image_size": (_is_size, "[height, width], two positive integers"),
    "label_kind": (lambda v: v in ("author", "genres"), '"author" or "genres"'),
    "authors": (_list_of(_is_str), "a list of strings"),
    "genres": (_list_of(_is_str), "a list of strings"),
    "genre_thresholds": (_list_of(_is_number), "a list of numbers"),
    "author_prior": (_list_of(_is_number), "a list of numbers"),
    "titles": (lambda v: isinstance(v, list), "a list of titles"),
    "open_set": (_is_open_set, "an object of numbers"),
}
# Keys a bundle may leave out (those written before enrolling existed).
OPTIONAL_FIELDS = {
    "enrolled_authors": (_list_of(_is_str), "a list of strings"),
    "enrolled": (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v), "a list of objects"),
    "prototype_temperature": (_is_number, "a number"),
    "enrolled_bias": (_is_number, "a number"),
    "title_index": (lambda v: _is_str(v) and "/" not in v and v.endswith(".npz"), "a .npz file name"),
    "catalog_marks": (lambda v: isinstance(v, dict) and all(_is_count(n) for n in v.values()),
                      "an object of catalog paths to image ids"),
    "resize": (lambda v: isinstance(v, dict) and all(_is_str(k) and _is_str(x) for k, x in v.items()),
               "an object of strings"),
}
ENROLLED_FIELDS = {
    "title": (_is_str, "a string"),
    "author": (lambda v: v is None or _is_str(v), "a string or null"),
    "source": (_is_str, "a string"),
    "date": (_is_str, "a string"),
    "images": (_is_count, "a count"),
}
TITLE_FIELDS = {
    "name": (_is_str, "a string"),
    "author": (lambda v: v is None or _is_str(v), "a string or null"),
    "genres": (_list_of(_is_str), "a list of strings"),
    "thumbnails": (_list_of(_is_str), "a list of strings"),
    "images": (_is_count, "a count"),
}


def check_manifest(meta, manifest: Path) -> str | None:
    """The first problem with a parsed bundle.json, as one line naming `manifest`; None if fine."""
    if not isinstance(meta, dict):
        return f"{manifest}: not a JSON object"
    problem = _check_fields(meta, FIELDS, "", OPTIONAL_FIELDS)
    if problem:
        return f"{manifest}: {problem}"
    for i, entry in enumerate(meta.get("enrolled", [])):
        problem = _check_fields(entry, ENROLLED_FIELDS, f"enrolled[{i}].")
        if problem:
            return f"{manifest}: {problem}"
    for i, title in enumerate(meta["titles"]):
        if not isinstance(title, dict):
            return f"{manifest}: titles[{i}] must be an object"
        problem = _check_fields(title, TITLE_FIELDS, f"titles[{i}].")
        if problem:
            return f"{manifest}: {problem}"
        # String tests, not Path objects: a bundle of 10,000 titles is checked on every load.
        if any(t.startswith("/") or ".." in t.split("/") for t in title["thumbnails"]):
            return f"{manifest}: titles[{i}].thumbnails must stay inside the bundle folder"
    if len(meta["genre_thresholds"]) != len(meta["genres"]):
        return (f"{manifest}: genre_thresholds has {len(meta['genre_thresholds'])} entries for "
                f"{len(meta['genres'])} genres")
    if len(meta["author_prior"]) != len(meta["authors"]):
        return (f"{manifest}: author_prior has {len(meta['author_prior'])} entries for "
                f"{len(meta['authors'])} authors")
    return None


def _check_fields(meta: dict, fields: dict, prefix: str, optional: dict | None = None) -> str | None:
    optional = optional or {}
    unknown = sorted(set(meta) - set(fields) - set(optional))
    if unknown:
        return f"unknown key {prefix}{unknown[0]!s}"
    for key, (check, expected) in {**fields, **optional}.items():
        if key not in meta:
            if key in optional:
                continue
            return f"key {prefix}{key} is missing"
        if not check(meta[key]):
            got = f"{type(meta[key]).__name__} {str(meta[key])[:40]!r}"
            return f"key {prefix}{key} must be {expected}, got {got}"
    return None
