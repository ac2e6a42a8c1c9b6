"""One Modbus TCP device read and written through its profile (async, pymodbus 3.16).

`ModbusDevice.poll()` reads every block of the profile (one request per block, at most 125
registers) and returns a Reading for every point, keyed by canonical key. It never raises for
device problems: what went wrong shows in each Reading's quality and in `health`.

Quality rules:
- never read successfully -> COMM_ERROR (value None);
- a block that fails (timeout, refused connection, Modbus exception response) keeps its points'
  last read value with its original time `t`: GOOD while younger than stale_after_s, STALE after;
- decoded values outside the profile range -> OUT_OF_RANGE; not-implemented/NaN -> INVALID.

Each device bounds its own worst case so the loop can poll all of them with asyncio.gather:
one connect attempt (timeout_s), then per request timeout_s x (1 + retries). A transport
failure (timeout, lost connection) closes the connection and backs off exponentially
(0.5 s doubling to 10 s); while backing off, poll() answers at once from the cache.

`write(values)` checks every value against the profile (writable, in range, representable)
before anything is sent, writes contiguous registers in one request and verifies each write by
reading the registers back. Any problem raises WriteError naming device, point and register.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from drivers.codec import EncodeError, Point, decode_sf, encode
from drivers.profile import Block, Profile
from drivers.reading import Quality, Reading

log = logging.getLogger("ems.device")

MAX_WRITE = 123  # Modbus limit for one write of holding registers (FC16)


class WriteError(Exception):
    """A write was refused or failed. The message names the device, the point and the register."""


class _Answered(Exception):
    """The device answered with a Modbus exception response (the connection is fine)."""


@dataclass
class DeviceHealth:
    connected: bool = False
    consecutive_failures: int = 0  # polls in a row with at least one failed block
    total_errors: int = 0  # failed requests/connects/writes since start
    last_error: str = ""
    last_good_t: float | None = None  # monotonic time of the last poll with every block read
    reads: int = 0  # successful block reads
    requests: int = 0  # requests sent (reads, writes, read-backs)
    backoff_s: float = 0.0  # current reconnect delay (0 while healthy)
    last_poll_s: float = 0.0  # duration of the last poll


class Endpoint(Protocol):
    """Where one device answers (the site file's device entry has these, among others). The driver
    needs only this, so it depends on nothing of the agent."""

    @property
    def id(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def unit(self) -> int: ...  # Modbus device id
    @property
    def timeout_s(self) -> float: ...  # per attempt
    @property
    def retries(self) -> int: ...


class ModbusDevice:
    def __init__(
        self,
        cfg: Endpoint,
        profile: Profile,
        stale_after_s: float,
        clock: Callable[[], float] = time.monotonic,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.profile = profile
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.health = DeviceHealth()
        self._client: AsyncModbusTcpClient | None = None
        self._next_attempt = -math.inf
        self._last: dict[str, Reading] = {}  # last decoded value of every point ever read
        self._sf: dict[str, int | None] = {}  # scale factors by key, from reads
        self._lock = asyncio.Lock()
        self._keys = tuple(profile.points)
        # worst cases with a margin over pymodbus' own timeout handling (a guard, not the rule):
        # one request, and one whole poll (connect + every block)
        self._request_deadline = cfg.timeout_s * (cfg.retries + 1) + 0.1
        self._poll_deadline = cfg.timeout_s * (1 + (cfg.retries + 1) * len(profile.blocks)) + 0.2

    @property
    def id(self) -> str:
        return self.cfg.id

    def health_dict(self) -> dict[str, Any]:
        return asdict(self.health)

    # --- connection ------------------------------------------------------------------------
    def _fail(self, err: str, transport: bool) -> None:
        h = self.health
        h.total_errors += 1
        h.last_error = err
        if transport:
            self._drop()
            h.backoff_s = self.backoff_min_s if h.backoff_s == 0 else min(self.backoff_max_s, 2 * h.backoff_s)
            self._next_attempt = self.clock() + h.backoff_s

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.health.connected = False

    async def _connect(self) -> AsyncModbusTcpClient | None:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = AsyncModbusTcpClient(
            self.cfg.host,
            port=self.cfg.port,
            timeout=self.cfg.timeout_s,
            retries=self.cfg.retries,
            reconnect_delay=0,  # we reconnect ourselves, with our own backoff
            name=self.cfg.id,
        )
        try:
            async with asyncio.timeout(self.cfg.timeout_s + 0.1):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException) as e:
            ok = False
            err = f"{type(e).__name__}: {e}"
        else:
            err = "connection refused or timed out"
        if not ok:
            client.close()
            self._fail(f"{self.cfg.id}: cannot connect to {self.cfg.host}:{self.cfg.port}: {err}", True)
            return None
        self._client = client
        self.health.connected = True
        return client

    async def _request(self, what: str, call: Any, guard: bool = True) -> Any:
        """Run one pymodbus request; exception responses raise _Answered, transport errors
        raise ModbusException/TimeoutError/OSError. `guard=False` when the caller already
        bounds the time (a poll has one deadline for all its blocks: cheaper)."""
        self.health.requests += 1
        if guard:
            async with asyncio.timeout(self._request_deadline):
                rr = await call
        else:
            rr = await call
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise _Answered(f"{self.cfg.id}: {what}: Modbus exception response (code {code})")
        return rr

    def _registers(self, rr: Any, fc: int, count: int, what: str) -> list[int]:
        """The registers of a read response, refused (as an answer) unless it is the response to
        the function code asked and holds exactly `count` registers: an FC4 answer to an FC3
        read, or a short one, must never be decoded as the registers asked for."""
        got_fc = getattr(rr, "function_code", None)
        if got_fc != fc:
            raise _Answered(f"{self.cfg.id}: {what}: answered with function code {got_fc}, expected {fc}")
        regs: list[int] = list(getattr(rr, "registers", None) or ())
        if len(regs) != count:
            raise _Answered(f"{self.cfg.id}: {what}: got {len(regs)} registers, expected {count}")
        return regs

    async def _read_block(self, client: AsyncModbusTcpClient, b: Block) -> Sequence[int]:
        unit = self.cfg.unit
        if b.table == "holding":
            call = client.read_holding_registers(b.start, count=b.count, device_id=unit)
        else:
            call = client.read_input_registers(b.start, count=b.count, device_id=unit)
        rr = await self._request(f"read {b.table} {b.start}+{b.count} (block {b.name!r})", call, guard=False)
        return self._registers(rr, 3 if b.table == "holding" else 4, b.count, f"block {b.name!r}")

    # --- polling ---------------------------------------------------------------------------
    async def poll(self) -> dict[str, Reading]:
        """A Reading for every point of the profile. Never raises for device problems."""
        t0 = self.clock()
        if t0 < self._next_attempt:
            return self._readings(t0)
        got: dict[Block, Sequence[int]] = {}
        async with self._lock:
            try:
                async with asyncio.timeout(self._poll_deadline):
                    await self._poll_blocks(got)
            except TimeoutError:
                self._fail(f"{self.cfg.id}: poll exceeded its {self._poll_deadline:g} s deadline", True)
        now = self.clock()
        last = self._last
        if got:
            for key, (value, q) in self.profile.decode_blocks(got, self._sf).items():
                last[key] = Reading(value, q, now)
        h = self.health
        h.last_poll_s = now - t0
        if len(got) == len(self.profile.blocks):
            h.consecutive_failures = 0
            h.backoff_s = 0.0
            h.last_good_t = now
            return dict(last)  # every point was just read: nothing can be stale
        h.consecutive_failures += 1
        return self._readings(now)

    async def _poll_blocks(self, got: dict[Block, Sequence[int]]) -> None:
        """Read the blocks into `got` (what was read stays there even if the poll times out)."""
        client = await self._connect()
        if client is None:
            return
        for b in self.profile.blocks:
            try:
                got[b] = await self._read_block(client, b)
                self.health.reads += 1
            except _Answered as e:
                self._fail(str(e), transport=False)
            except (ModbusException, TimeoutError, OSError) as e:
                # no answer: the rest would time out too; drop the connection and back off
                self._fail(f"{self.cfg.id}: block {b.name!r}: {type(e).__name__}: {e}", transport=True)
                break

    def _readings(self, now: float) -> dict[str, Reading]:
        out: dict[str, Reading] = {}
        last = self._last
        stale_before = now - self.stale_after_s
        for key in self._keys:
            r = last.get(key)
            if r is None:
                out[key] = Reading(None, Quality.COMM_ERROR, now)
            elif r.quality is Quality.GOOD and r.t <= stale_before and r.t < now:
                out[key] = Reading(r.value, Quality.STALE, r.t)
            else:
                out[key] = r
        return out

    # --- writing ---------------------------------------------------------------------------
    async def write(self, values: Mapping[str, float]) -> None:
        """Write values (by key), verified by read-back. Raises WriteError, sends nothing if
        any value is refused."""
        if not values:
            return
        points = [self._check(key, v) for key, v in values.items()]
        async with self._lock:
            if self.clock() < self._next_attempt:
                raise WriteError(f"device {self.cfg.id}: offline (reconnect in {self.health.backoff_s:g} s backoff)")
            client = await self._connect()
            if client is None:
                raise WriteError(f"device {self.cfg.id}: {self.health.last_error}")
            try:
                await self._load_sf(client, [p for p, _ in points])
                segments = self._segments([(p, self._encode(p, v)) for p, v in points])
                for start, words, names in segments:
                    await self._write_verified(client, start, words, names)
            except (ModbusException, TimeoutError, OSError) as e:
                self._fail(f"{self.cfg.id}: write: {type(e).__name__}: {e}", transport=True)
                raise WriteError(f"device {self.cfg.id}: write failed: {type(e).__name__}: {e}") from None
            except _Answered as e:
                self._fail(str(e), transport=False)
                raise WriteError(str(e)) from None

    def _check(self, key: str, v: float) -> tuple[Point, float]:
        p = self.profile.points.get(key)
        dev = f"device {self.cfg.id}"
        if p is None:
            raise WriteError(f"{dev}: profile {self.profile.name!r} has no point {key!r}")
        where = f"{dev}: point {key!r} ({p.name}, register {p.addr})"
        if not p.writable:
            raise WriteError(f"{where} is not writable")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise WriteError(f"{where}: value {v!r} is not a finite number")
        if p.range is not None and not p.range[0] <= v <= p.range[1]:
            raise WriteError(f"{where}: value {v:g} outside range [{p.range[0]:g}, {p.range[1]:g}]")
        return p, float(v)

    def _encode(self, p: Point, v: float) -> list[int]:
        sf = self._sf.get(p.scale_sf) if p.scale_sf is not None else None
        try:
            return encode(p, v, sf)
        except EncodeError as e:
            raise WriteError(f"device {self.cfg.id}: {e}") from None

    async def _load_sf(self, client: AsyncModbusTcpClient, points: Sequence[Point]) -> None:
        """Read (once, then cached) the scale factors the written points need."""
        for p in points:
            if p.scale_sf is None or self._sf.get(p.scale_sf) is not None:
                continue
            sfp = self.profile.sf_points[p.scale_sf]
            rr = await self._request(
                f"read scale factor {sfp.key} at register {sfp.addr}",
                client.read_holding_registers(sfp.addr, count=1, device_id=self.cfg.unit),
            )
            (word,) = self._registers(rr, 3, 1, f"scale factor {sfp.key} at register {sfp.addr}")
            sf = decode_sf(word)
            if sf is None:
                raise WriteError(
                    f"device {self.cfg.id}: point {p.key!r} (register {p.addr}): scale factor "
                    f"{sfp.key} at register {sfp.addr} is not implemented (0x{word:04X})"
                )
            self._sf[p.scale_sf] = sf

    @staticmethod
    def _segments(encoded: Sequence[tuple[Point, list[int]]]) -> list[tuple[int, list[int], list[str]]]:
        """Merge points that follow each other in the caller's order and in register order
        into one write (the caller's order is kept: it may matter to the device)."""
        segs: list[tuple[int, list[int], list[str]]] = []
        for p, words in encoded:
            if segs:
                start, w, names = segs[-1]
                if start + len(w) == p.addr and len(w) + len(words) <= MAX_WRITE:
                    w.extend(words)
                    names.append(p.key)
                    continue
            segs.append((p.addr, list(words), [p.key]))
        return segs

    async def _write_verified(
        self, client: AsyncModbusTcpClient, start: int, words: list[int], names: list[str]
    ) -> None:
        unit = self.cfg.unit
        what = f"write {', '.join(names)} at register {start}"
        await self._request(what, client.write_registers(start, words, device_id=unit))
        rr = await self._request(
            f"read back {', '.join(names)} at register {start}",
            client.read_holding_registers(start, count=len(words), device_id=unit),
        )
        back = self._registers(rr, 3, len(words), f"read back {', '.join(names)} at register {start}")
        if back != words:
            self.health.total_errors += 1
            self.health.last_error = f"{self.cfg.id}: read-back mismatch at register {start}"
            raise WriteError(
                f"device {self.cfg.id}: point(s) {', '.join(names)} at register {start}: "
                f"read back {back} after writing {words}"
            )

    async def close(self) -> None:
        async with self._lock:
            self._drop()
