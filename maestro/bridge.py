"""The one bridge from synchronous code to the asynchronous data plane.

The data plane (invoke, the upstream MCP client, the evidence writer) is written once, as
coroutines on an event loop (DESIGN section 1). Synchronous callers (Django's control plane on its
thread pool, Celery tasks, management commands, tests) reach it through `run()`:

- in a web or gRPC worker, the data plane's own loop runs in the main thread; a control-plane
  thread hands the coroutine to that loop and waits, so it shares the loop's upstream connections,
  Redis and database pools instead of opening its own;
- anywhere else (Celery, a command, a test), a private loop runs in one daemon thread of the
  process, started on first use (and again after a fork: a loop does not survive one).

Objects bound to a loop (connection pools, clients) are made per loop with `per_loop`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_served_loop: asyncio.AbstractEventLoop | None = None
_own: tuple[int, asyncio.AbstractEventLoop] | None = None
_own_lock = threading.Lock()


def serve_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Declare the loop the data plane serves on in this process (None when it stops)."""
    global _served_loop
    _served_loop = loop


def _private_loop() -> asyncio.AbstractEventLoop:
    global _own
    own = _own
    if own is not None and own[0] == os.getpid():
        return own[1]
    with _own_lock:
        if _own is None or _own[0] != os.getpid():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="maestro-bridge-loop", daemon=True).start()
            ready.wait()
            _own = (os.getpid(), loop)
        return _own[1]


def target_loop() -> asyncio.AbstractEventLoop:
    loop = _served_loop
    if loop is not None and loop.is_running() and not loop.is_closed():
        return loop
    return _private_loop()


def run(coro: Awaitable[T], *, timeout: float | None = None) -> T:
    """Run `coro` on the data plane's loop and return its result, from a thread that is not that
    loop's own (which would deadlock: a coroutine there must be awaited instead)."""
    loop = target_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()  # type: ignore[attr-defined]
        raise RuntimeError("bridge.run() called from the loop it would wait on: await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)  # type: ignore[arg-type]


def per_loop(factory: Callable[[], T]) -> Callable[[], T]:
    """`factory()` once per running event loop (a pool or client bound to that loop). Called only
    from the loop's own thread, so no lock: a loop runs one thing at a time."""
    instances: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get() -> T:
        loop = asyncio.get_running_loop()
        found = instances.get(loop)
        if found is None:
            found = instances[loop] = factory()
        return found

    def forget() -> T | None:
        """Drop this loop's instance (after closing it), so the next `get()` makes a new one: a
        stopped data plane started again in the same process (a test session run twice in one
        interpreter, as mutmut does) must not get closed pools back."""
        return instances.pop(asyncio.get_running_loop(), None)

    get.instances = instances  # type: ignore[attr-defined]
    get.forget = forget  # type: ignore[attr-defined]
    return get


def submit(coro: Awaitable[object]) -> None:
    """Start `coro` on the data plane's loop without waiting for it (best-effort background work,
    such as closing upstream sessions); its failure is logged by the loop's exception handler."""
    asyncio.run_coroutine_threadsafe(coro, target_loop())  # type: ignore[arg-type]


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Stop a background task of the loop and wait until it has stopped, whatever it raised: the
    caller (a stop or a shutdown) only needs it gone."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
