"""Work done ahead in threads, handed back in order: decoding while a network runs.

PIL releases the GIL while it decodes and resizes, so a few threads keep images ready while
the caller's network (LiteRT, Keras) holds the cores; the window bounds how many results wait.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

DEFAULT_AHEAD = 64  # results waiting at most: bounds the memory of decoded images


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def prefetched(
    fn: Callable[[Item], Result],
    items: Iterable[Item],
    ahead: int = DEFAULT_AHEAD,
    threads: int | None = None,
) -> Iterator[Result]:
    """`fn(item)` for each item, in order, computed up to `ahead` items in advance.

    `fn` should turn expected failures into values (an error result), not raise: an exception
    is raised here at that item, and the work queued behind it is dropped.
    """
    items = iter(items)
    with ThreadPoolExecutor(threads or default_threads()) as pool:
        window: deque = deque()
        try:
            for item in items:
                window.append(pool.submit(fn, item))
                if len(window) >= ahead:
                    break
            while window:
                result = window.popleft().result()
                for item in items:
                    window.append(pool.submit(fn, item))
                    break
                yield result
        finally:
            for future in window:
                future.cancel()
