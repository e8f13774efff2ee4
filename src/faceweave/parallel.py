"""Per-item work spread over the CPU's cores, every item computed on one thread.

    from faceweave.parallel import each
    images = each(render_one, range(n))      # [render_one(0), ..., render_one(n - 1)]

Why. A CPU matrix product or convolution rounds differently with a different number of
threads sharing it, or a different number of rows; a backend that promises that image i is
the same whatever else is in its batch therefore computes each image alone. Alone on two
threads, one small image keeps a second core half idle. `each` instead runs the one-image
computations side by side, each on one torch thread, on as many threads as torch may use
(`torch.get_num_threads()`): an item comes out bit for bit as it does alone, on any machine
and at any thread count, and a batch keeps every core busy.

The caller's grad mode is carried into the worker threads; an exception in any item is
raised in the caller (the first one, by item order) once every worker has stopped.
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def each(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """[fn(item) for item in items], every call on one torch thread, the calls spread over
    `workers` threads (default: torch.get_num_threads()); results in the items' order."""
    items = list(items)
    threads = torch.get_num_threads()
    k = max(1, min(threads if workers is None else int(workers), len(items)))
    grad = torch.is_grad_enabled()
    results: list = [None] * len(items)
    errors: dict[int, BaseException] = {}
    lock = threading.Lock()
    order = iter(range(len(items)))
    # every worker sets its thread count before any starts working: setting it resets caches
    # that a running convolution may be reading
    ready = threading.Barrier(k)

    def work() -> None:
        torch.set_num_threads(1)
        ready.wait()
        with torch.set_grad_enabled(grad):
            while True:
                with lock:
                    i = next(order, None)
                if i is None:
                    return
                try:
                    results[i] = fn(items[i])
                except BaseException as e:          # raised in the caller below
                    errors[i] = e

    helpers = [threading.Thread(target=work, name=f"faceweave-each-{j}", daemon=True) for j in range(k - 1)]
    try:
        for t in helpers:
            t.start()
        work()                                       # the calling thread is one of the workers
    finally:
        for t in helpers:
            t.join()
        torch.set_num_threads(threads)
    if errors:
        raise errors[min(errors)]
    return results
