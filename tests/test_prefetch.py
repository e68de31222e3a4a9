"""Work done ahead in threads comes back in order, never more than the window ahead, and stops
when the caller stops."""

import threading
import time

import pytest

from datasets.prefetch import prefetched


def test_results_come_back_in_order_whatever_finishes_first():
    def slow_for_evens(i: int) -> int:
        time.sleep(0.01 if i % 2 == 0 else 0)
        return i * i

    assert list(prefetched(slow_for_evens, range(50), ahead=8, threads=4)) == [i * i for i in range(50)]


def test_no_more_than_the_window_is_started_ahead_of_the_caller():
    started = []
    lock = threading.Lock()

    def record(i: int) -> int:
        with lock:
            started.append(i)
        return i

    results = prefetched(record, range(1000), ahead=5, threads=2)
    assert next(results) == 0
    time.sleep(0.05)
    with lock:
        assert max(started) <= 5  # the one handed back and the five waiting
    results.close()
    with lock:
        assert len(started) <= 6  # nothing queued behind the window ran after close


def test_an_exception_is_raised_at_its_item():
    def fail_at_three(i: int) -> int:
        if i == 3:
            raise ValueError("three")
        return i

    results = prefetched(fail_at_three, range(10), ahead=4, threads=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="three"):
        next(results)


def test_empty_input_gives_nothing():
    assert list(prefetched(lambda i: i, [], ahead=4)) == []
