"""Dynamic batching: requests that arrive together share one forward pass.

One worker per model takes the first waiting request, then keeps collecting requests (with the
same options) until the batch holds `max_batch` inputs or `max_wait_ms` has passed, runs the
model once in a thread (the event loop stays free), and hands each request its slice. With
batching off the worker runs one request at a time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class _Pending:
    items: list[Any]
    options: dict[str, Any]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    def __init__(self, predict: Callable[[list[Any], dict[str, Any]], list[Any]], max_batch: int = 32,
                 max_wait_ms: float = 5.0, enabled: bool = True,
                 on_batch: Callable[[int], None] = lambda size: None):
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self.enabled, self.on_batch = enabled, on_batch
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.held: _Pending | None = None  # taken from the queue but with other options

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.worker:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)

    async def submit(self, items: list[Any], options: dict[str, Any]) -> list[Any]:
        pending = _Pending(items, options)
        await self.queue.put(pending)
        return await pending.future

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self.held is not None:
            pending, self.held = self.held, None
            return pending
        if timeout is None:
            return await self.queue.get()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _run(self) -> None:
        while True:
            first = await self._next(None)
            group, size = [first], len(first.items)
            deadline = time.monotonic() + self.max_wait
            while self.enabled and size < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                pending = await self._next(remaining)
                if pending is None:
                    break
                if pending.options != first.options or size + len(pending.items) > self.max_batch:
                    self.held = pending  # starts the next batch
                    break
                group.append(pending)
                size += len(pending.items)
            await self._execute(group, size)

    async def _execute(self, group: list[_Pending], size: int) -> None:
        items = [item for pending in group for item in pending.items]
        self.on_batch(size)
        try:
            results = await asyncio.to_thread(self.predict, items, group[0].options)
        except Exception as exc:
            if len(group) > 1:
                # Requests are checked alone before they join a batch; should one still fail
                # inside it, run each alone, so only the request at fault gets the error.
                for pending in group:
                    await self._execute([pending], len(pending.items))
                return
            if not group[0].future.done():  # the worker goes on
                group[0].future.set_exception(exc)
            return
        start = 0
        for pending in group:
            if not pending.future.done():
                pending.future.set_result(results[start:start + len(pending.items)])
            start += len(pending.items)
