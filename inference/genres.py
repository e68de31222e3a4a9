"""Genres of a synopsis, from a text genre model.

    python -m inference.genres --model runs/tags/text_genres "A puzzle game for children ..."
    python -m inference.genres --model BUNDLE @synopsis.txt         # a file
    echo "소년이 마법 학교에 입학한다" | python -m inference.genres --model BUNDLE   # stdin
    python -m inference.genres --model BUNDLE --top-k 5 --json "..."

--model is a text model folder (`python -m training.train_text` writes one) or an image bundle
that holds one. Genres at or over their thresholds (tuned on validation) are listed with their
scores; --top-k lists the k likeliest instead, each marked whether it passed its threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from datasets.cli_exit import run_main
from datasets.texts import TextError
from inference.text_genres import TextAnswer, TextGenreFinder, has_text_model, synopsis_argument
from models.text_genre_model import TextModelError

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference.genres", description=__doc__.split("\n")[0])
    parser.add_argument(
        "text", nargs="?", help="the synopsis; @FILE reads a UTF-8 file; - or none reads stdin"
    )
    parser.add_argument("--model", required=True, help="text model folder, or an image bundle holding one")
    parser.add_argument("--top-k", type=int, help="list the k likeliest genres, whatever their thresholds")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def read_synopsis(value: str | None, stdin=None) -> tuple[str, str]:
    """(text, where it came from) for an argument, @FILE, or stdin ('-' or nothing)."""
    if value is None or value == "-":
        stream = stdin or sys.stdin
        data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode()
        if b"\x00" in data:
            raise TextError("stdin: binary data, not text")
        try:
            return data.decode("utf-8-sig"), "stdin"
        except UnicodeDecodeError as err:
            raise TextError(f"stdin: not UTF-8 text (byte {err.start})") from None
    if value.startswith("@"):
        return synopsis_argument(value), value[1:]
    return value, "the synopsis argument"


def format_answer(answer: TextAnswer, top_k: int | None) -> list[str]:
    if answer.note:
        return [f"genres: none ({answer.note})"]
    if not answer.genres:
        return ["genres: none passed its threshold (try --top-k 5)"]
    heading = f"top {top_k} genres" if top_k else "genres"
    return [f"{heading}:"] + [
        f"  {g.name:<32} {g.probability:.3f}  (threshold {g.threshold:.2f}"
        f"{'' if g.decided else ', not passed'})"
        for g in answer.genres
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k is not None and not 1 <= args.top_k <= 1000:
        print(f"error: --top-k must be between 1 and 1000, got {args.top_k}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not has_text_model(args.model):
        print(
            f"error: {args.model}: no text genre model here (train one with python -m training.train_text, "
            "--bundle puts it into an image bundle)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        text, origin = read_synopsis(args.text)
        finder = TextGenreFinder(args.model)
        answer = finder.answer(text, args.top_k, origin)
    except (TextError, TextModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({"source": origin, **answer.to_dict()}, ensure_ascii=False, indent=1))
    else:
        print("\n".join(format_answer(answer, args.top_k)))
    return 0


if __name__ == "__main__":
    run_main(main)
