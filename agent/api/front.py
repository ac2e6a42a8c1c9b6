"""The API process: `python -m agent.api.front CHANNEL_FD LISTEN_FD` (started by agent/api/process.py).

Reads the Init from the channel, serves the API (uvicorn) on the listening socket it inherited,
mirrors the control process's frames and forwards commands to it, until the channel ends: when
the control process stops, or dies (the kernel closes its end), this process exits by itself.
Signals are the control process's: SIGINT (a terminal's Ctrl-C), SIGHUP and SIGTERM (systemd
sends it to the whole service) are ignored here; the agent stops this process by closing the
channel, after its own shutdown, and a crash of this process is never mistaken for a stop. It runs at a
lower CPU priority (API_NICE): on a saturated controller the control loop and the plant's
Modbus traffic get the cores first, and operators wait a little longer for a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import resource
import signal
import socket
import sys

from agent.logs import kv, setup_logging
from agent.model.clock import SiteClock

from .app import SHUTDOWN_GRACE_S, ApiServer, create_app
from .channel import INIT, MAX_FRAME_BYTES, ChannelError, Init, read_msg
from .guard import quiet_floods
from .mirror import Mirror

log = logging.getLogger("ems.api")
INIT_TIMEOUT_S = 30.0
API_NICE = 10  # added to the control process's nice value (which is unchanged)


async def serve(channel_fd: int, listen_fd: int) -> int:
    chan = socket.socket(fileno=channel_fd)
    listener = socket.socket(fileno=listen_fd)
    reader, writer = await asyncio.open_unix_connection(sock=chan)
    try:
        msg = await asyncio.wait_for(read_msg(reader, MAX_FRAME_BYTES), INIT_TIMEOUT_S)
    except (TimeoutError, ChannelError) as e:
        print(f"ems api process: no init from the control process ({e!r})", file=sys.stderr)
        return 2
    if msg is None or msg[0] != INIT:
        return 0 if msg is None else 2  # the control process went away before it began
    init: Init = pickle.loads(msg[1])
    setup_logging(init.log_level)
    quiet_floods()  # a connection flood is one log line per 10 s, not one per connection
    mirror = Mirror(init.site, clock=SiteClock(init.speed).monotonic)  # the control process's clock
    server = ApiServer(create_app(mirror, init.tokens, open_read=init.open_read), sock=listener)
    serving = asyncio.create_task(server.run(), name="uvicorn")
    await server.started()
    feeding = asyncio.create_task(mirror.serve(reader, writer), name="mirror")
    done, _ = await asyncio.wait({serving, feeding}, return_when=asyncio.FIRST_COMPLETED)
    uvicorn_died = feeding not in done
    server.stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(serving), SHUTDOWN_GRACE_S + 2.0)
    feeding.cancel()
    writer.close()
    if uvicorn_died:
        exc = None if serving.cancelled() else serving.exception()
        log.error("api server stopped on its own", extra=kv(error=repr(exc)))
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all(a.isdigit() for a in argv):
        print("usage: python -m agent.api.front CHANNEL_FD LISTEN_FD (started by the agent)", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(API_NICE)
    with contextlib.suppress(ValueError, OSError):  # room for the connection limit (guard.py)
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return asyncio.run(serve(int(argv[0]), int(argv[1])))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
