"""Group commit: concurrent requests share one transaction, each answered after that commit.

One commit per request tops out at the database's commit rate (each waits for its own WAL flush).
Here requests queue up while a commit is in flight and the next commit takes all of them, so at low
load a request is committed at once and under load the batches grow by themselves. A request is still
only answered once its own events are durable. If a shared transaction fails for a reason other than
the database being unavailable, its requests are retried one by one, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from . import metrics
from .db import database_down
from .events import BounceEvent
from .recorder import Recorder, RecordResult

log = logging.getLogger(__name__)

Pending = tuple[Sequence[BounceEvent], "asyncio.Future[RecordResult]"]


class GroupCommitter:
    def __init__(self, recorder: Recorder, *, max_events: int = 1000, max_wait: float = 0.0, flushers: int = 1) -> None:
        self.recorder = recorder
        self.max_events = max_events
        self.max_wait = max_wait
        self.flushers = flushers
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._flush_forever(), name=f"group-commit-{i}") for i in range(self.flushers)]

    async def stop(self) -> None:
        """Finish what is queued (those callers are waiting for an answer), then stop."""
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def record(self, events: Sequence[BounceEvent]) -> RecordResult:
        if not events:
            return RecordResult()
        future: asyncio.Future[RecordResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((events, future))
        return await future

    async def _flush_forever(self) -> None:
        while True:
            group = [await self._queue.get()]
            try:
                await self._gather(group)
                await self._commit(group)
            finally:
                for _ in group:
                    self._queue.task_done()

    async def _gather(self, group: list[Pending]) -> None:
        size = len(group[0][0])
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_events:
            if self._queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    return
            else:
                item = self._queue.get_nowait()
            group.append(item)
            size += len(item[0])

    async def _commit(self, group: list[Pending]) -> None:
        metrics.COMMIT_GROUP_REQUESTS.observe(len(group))
        try:
            results = await self.recorder.record_groups([events for events, _ in group])
        except Exception as exc:  # noqa: BLE001 - isolated below: each request is retried on its own
            if database_down(exc) or len(group) == 1:  # down: the requests would each wait for it in turn
                for _, future in group:
                    _settle(future, exc=exc)
                return
            # A statement refused one event, or the transaction lost a deadlock: it says nothing of the rest.
            log.warning("group commit of %d requests failed (%s); retrying them one by one", len(group), type(exc).__name__)
            for index, (events, future) in enumerate(group):
                try:
                    _settle(future, result=await self.recorder.record(events))
                except Exception as single:  # noqa: BLE001 - handed to the waiting request
                    if database_down(single):  # it went away meanwhile
                        for _, waiting in group[index:]:
                            _settle(waiting, exc=single)
                        return
                    _settle(future, exc=single)
            return
        for (_, future), result in zip(group, results):
            _settle(future, result=result)


def _settle(future: asyncio.Future, *, result: RecordResult | None = None, exc: BaseException | None = None) -> None:
    if future.done():  # the caller went away (client disconnected); the commit stands regardless
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
