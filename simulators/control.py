"""JSON-lines control socket of a running simulated site (127.0.0.1 only).

One JSON object per line in, one per line out:

    {"cmd": "cluster_fault", "id": "c03"}              -> {"ok": true, "status": {...}}
    {"cmd": "cluster_fault", "id": "c03", "on": false} (clear)
    {"cmd": "nonsense"}                                -> {"ok": false, "error": "unknown command ..."}

Commands: cluster_fault, cluster_remove, pcs_trip, pcs_ct (gain: what its grid meter reads x the
grid, -1 by default: CT reversed; on=false restores), silent, exception (code), corrupt (key,
value: number or "nan"; on=false restores), grid (up: bool), load_offset (w), clear, status.
See SimulatedSite.command. The server knows only that handler (a function of the command), not
the site: the site imports this module, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

MAX_LINE = 64 * 1024

Handler = Callable[[dict[str, Any]], dict[str, Any]]  # a command -> the site's status after it


class ControlServer:
    def __init__(self, command: Handler, port: int = 0):
        self.command = command
        self.port = port
        self._srv: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        try:
            self._srv = await asyncio.start_server(self._handle, "127.0.0.1", self.port, limit=MAX_LINE)
        except OSError as e:
            raise OSError(f"cannot open the control socket on 127.0.0.1:{self.port}: {e.strerror}") from None
        self.port = int(self._srv.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._srv is not None:
            self._srv.close()
            for t in list(self._conns):
                t.cancel()
            with contextlib.suppress(Exception):
                await self._srv.wait_closed()
            self._srv = None

    def reply(self, line: bytes) -> dict[str, Any]:
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("a command must be a JSON object")
            return {"ok": True, "status": self.command(cmd)}
        except (ValueError, KeyError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            return {"ok": False, "error": str(msg)}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(b'{"ok": false, "error": "line too long"}\n')
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                writer.write(json.dumps(self.reply(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()


async def send_command(port: int, cmd: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Send one command to a simulated site's control socket and return its answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
    try:
        writer.write(json.dumps(cmd).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout_s)
    finally:
        writer.close()
    if not line:
        raise ConnectionError(f"simulator control socket 127.0.0.1:{port} closed without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer
