"""The API process: started with the runtime, fed by it, restarted if it dies, gone with it.

The control process binds the listening socket (so the port is known at once and stays bound
across restarts of the API process: connections wait in the backlog meanwhile) and hands it to
`python -m agent.api.front` with one end of a socketpair, the channel (agent/api/channel.py).
The API process exits by itself when the channel ends: when the runtime stops or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
import sys
import time

from agent.logs import kv

from .bridge import ApiBridge
from .channel import INIT, Init, pack

log = logging.getLogger("ems.api")
RESTART_MIN_S = 0.5  # first restart after a crash; doubles per crash up to RESTART_MAX_S
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a process that lived this long resets the backoff
STOP_GRACE_S = 5.0  # after the channel closes: open SSE streams get 2 s, then uvicorn exits


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 = a free one), TCP_NODELAY for the connections it accepts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. Without it, a response written as headers + body meets the
    # client's delayed ACK and every keep-alive request takes ~44 ms (measured, bench/api_load.py).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class ApiProcess:
    """`start()` spawns and supervises the API process; `stop()` ends it (SSE streams get a grace)."""

    def __init__(self, bridge: ApiBridge, init: Init, host: str, port: int) -> None:
        self.bridge = bridge
        self.init = init
        self.sock = listen_socket(host, port)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.restarts = 0
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._channel: asyncio.StreamWriter | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The running API process's id (None between a crash and its restart)."""
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="api-process")

    async def started(self, timeout_s: float = 30.0) -> None:
        """Wait until the current API process serves."""
        try:
            await asyncio.wait_for(self.bridge.started.wait(), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"API process on {self.url} did not start within {timeout_s:g} s") from None

    async def stop(self) -> None:
        """Close the channel (the API process's cue to exit), wait for it, kill it if it hangs."""
        self._stop.set()
        if self._channel is not None:
            self._channel.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
            except TimeoutError:
                if self.proc is not None and self.proc.returncode is None:
                    log.warning("api process did not exit; killing it", extra=kv(pid=self.proc.pid))
                    self.proc.kill()
                await asyncio.wait_for(self._task, STOP_GRACE_S)
        self.sock.close()

    async def _spawn(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ours, theirs = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.api.front", str(theirs.fileno()), str(self.sock.fileno()),
                pass_fds=(theirs.fileno(), self.sock.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        writer.write(pack(INIT, pickle.dumps(self.init, pickle.HIGHEST_PROTOCOL)))
        self._channel = writer
        return reader, writer

    async def _supervise(self) -> None:
        delay = RESTART_MIN_S
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                reader, writer = await self._spawn()
            except OSError as e:
                log.error("api process could not start", extra=kv(error=str(e)))
            else:
                assert self.proc is not None
                serve = asyncio.create_task(self.bridge.serve(reader, writer), name="api-channel")
                rc = await self.proc.wait()
                serve.cancel()
                try:
                    await serve
                except asyncio.CancelledError:
                    pass
                except Exception:  # the supervisor outlives any failure of one channel
                    log.exception("api channel failed", extra=kv(pid=self.proc.pid))
                if self._stop.is_set():
                    break
                if time.monotonic() - t0 > HEALTHY_AFTER_S:
                    delay = RESTART_MIN_S
                log.error("api process exited; restarting it", extra=kv(returncode=rc, pid=self.proc.pid, in_s=delay))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(RESTART_MAX_S, 2 * delay)
            self.restarts += 1
