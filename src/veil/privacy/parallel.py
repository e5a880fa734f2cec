"""One image per core: a small ordered thread-pool map used by the folder and video pipelines.

onnxruntime releases the GIL while it runs, so threads are enough; each uses a single-threaded detector
(`detector_for(settings, threads=1)`), which on a small shared CPU beats one image at a time over all cores.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Out = TypeVar("Out")


def workers() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(fn: Callable[[Item], Out], items: Iterable[Item], parallel: int | None = None) -> Iterator[Out]:
    """`map` over a thread pool, results in input order, at most 2× `parallel` items in flight (memory).

    `items` is consumed in the calling thread, so a generator with side effects (a demuxer) stays
    single-threaded.
    """
    parallel = parallel or workers()
    with ThreadPoolExecutor(parallel, thread_name_prefix="veil-anonymize") as pool:
        pending: deque[Future[Out]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * parallel:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
