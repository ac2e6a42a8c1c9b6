"""The part every telemetry sink shares: a bounded in-memory queue and one writer thread.

`submit` appends a captured cycle and returns (microseconds). The thread batches points up to
`batch_points` or `flush_interval_s`, hands them to `flush`, and calls `idle` between batches
(the InfluxDB sink replays its spool there). If the thread falls behind by `queue_records`
cycles, the oldest are dropped and counted (an alarm says so); `close` drains what is queued.
A thread (not an asyncio task) because the writes block on HTTP or disk and the formatting
costs CPU: neither may run on the control loop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque

from agent.live.hub import CycleRecord
from agent.logs import kv
from agent.telemetry.feed import Captured, Feed
from agent.telemetry.schema import Point

log = logging.getLogger("ems.telemetry")


class BackgroundSink:
    name = "telemetry"

    def __init__(self, feed: Feed, queue_records: int, batch_points: int, flush_interval_s: float) -> None:
        self.feed = feed
        self.batch_points = batch_points
        self.flush_interval_s = flush_interval_s
        self._q: deque[Captured] = deque()
        self._max = queue_records
        self._cv = threading.Condition()
        self._stop = False
        self._stop_at = math.inf  # monotonic time close() was called (inf: running)
        self._abandoned = False  # close() stopped waiting: the thread releases the resources itself
        self._exited = False  # the writer thread has finished
        self.queue_dropped = 0
        self.cycles_in = 0  # cycles turned into points by the writer thread
        self.points_in = 0  # points made from them
        self.points_out = 0  # points flush() took (written, spooled or parked)
        self._thread: threading.Thread | None = None

    # --- caller side -------------------------------------------------------------------------
    def submit(self, rec: CycleRecord) -> None:
        c = self.feed.capture(rec)
        with self._cv:
            if len(self._q) >= self._max:
                self._q.popleft()
                self.queue_dropped += 1
                dropped = self.queue_dropped
            else:
                dropped = 0
            self._q.append(c)
            self._cv.notify()
        if dropped:
            self.feed.alarm(
                "telemetry_queue_full",
                f"telemetry writer fell behind: {dropped} cycles dropped from memory",
            )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_then_exit, name=f"{self.name}-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread after it has flushed (or spooled) everything queued: wait as long as the
        sink's last writes may take (stop_wait_s). Resources are released after the thread, never
        under it: a write in flight whose spool had been closed beneath it was lost, neither sent
        nor spooled (eight writers beside one store on a loaded 2-core machine, 30 s writes)."""
        with self._cv:
            self._stop = True
            self._stop_at = time.monotonic()
            self._cv.notify()
        th = self._thread
        if th is not None:
            th.join(self.stop_wait_s())
            with self._cv:  # exactly one of close() and the thread's _exit releases the resources
                self._abandoned = not self._exited
            if self._abandoned:
                log.error(
                    "telemetry writer did not stop in time: it closes when its write returns",
                    extra=kv(sink=self.name, waited_s=round(self.stop_wait_s(), 1)),
                )
                return
            self._thread = None
        self.closed()

    def stop_wait_s(self) -> float:
        """How long close() waits for the writer: a flush of a local store takes well under this."""
        return 10.0

    def stopping_for_s(self) -> float:
        """Seconds since close() was called (-inf while running): a sink's last writes are bounded by it."""
        return time.monotonic() - self._stop_at

    @property
    def queue_depth(self) -> int:
        return len(self._q)

    # --- writer thread -----------------------------------------------------------------------
    def agent_fields(self) -> dict[str, float]:
        return {"queue_depth": float(len(self._q)), "queue_dropped": float(self.queue_dropped)}

    def _run_then_exit(self) -> None:
        try:
            self._run()
        finally:
            self._exit()

    def _run(self) -> None:
        pending: list[Point] = []
        first_at = 0.0
        while True:
            with self._cv:
                if not self._q and not self._stop:
                    wait = self.flush_interval_s
                    if pending:
                        wait = max(0.0, first_at + self.flush_interval_s - time.monotonic())
                    self._cv.wait(min(wait, self.idle_wait_s()))
                items = list(self._q)
                self._q.clear()
                stopping = self._stop
            if items:
                fields = self.agent_fields()
                for c in items:
                    if not pending:
                        first_at = time.monotonic()
                    pts = self.feed.points(c, fields)
                    pending.extend(pts)
                    self.cycles_in += 1
                    self.points_in += len(pts)
                    if len(pending) >= self.batch_points:
                        self._flush_safe(pending[: self.batch_points])
                        del pending[: self.batch_points]
                        first_at = time.monotonic()
            if pending and (stopping or time.monotonic() - first_at >= self.flush_interval_s):
                self._flush_safe(pending)
                pending = []
            if stopping:
                break
            try:
                self.idle()
            except Exception:  # the writer thread must survive anything
                log.exception("telemetry idle work failed", extra=kv(sink=self.name))

    def _exit(self) -> None:
        """The thread's last act: release the resources if close() stopped waiting for it."""
        with self._cv:
            self._exited = True
            abandoned = self._abandoned
        if abandoned:
            self.closed()

    def _flush_safe(self, points: list[Point]) -> None:
        try:
            self.flush(points)
            self.points_out += len(points)
        except Exception:
            log.exception("telemetry flush failed", extra=kv(sink=self.name, points=len(points)))

    # --- for subclasses ------------------------------------------------------------------------
    def flush(self, points: list[Point]) -> None:
        raise NotImplementedError

    def idle(self) -> None:
        """Work between batches (spool replay). Must return within about a second."""

    def idle_wait_s(self) -> float:
        """How long the thread may sleep with nothing queued (short while a replay is due)."""
        return self.flush_interval_s

    def closed(self) -> None:
        """Release resources after the thread stopped."""
