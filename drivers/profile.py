"""Device profiles: one TOML file per device type describes its register map (drivers/README.md).

`load_profile(name_or_path)` reads and validates a profile (ConfigError naming file, point
and problem). A `Profile` knows its blocks (what to read, one request each), its points and
scale factors, its SunSpec model chain, and converts both ways between register words and
canonical values: `decode_blocks` for the driver, `encode_image` / `decode_image` for the
simulators and the tests. Adding a vendor is a new file under drivers/profiles/, not code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, NoReturn

from common.tomlcheck import ConfigError, Table, load_toml
from drivers import keys
from drivers.codec import (
    TYPE_WORDS,
    Decoder,
    Point,
    Value,
    decode,
    decode_sf,
    decoder,
    encode,
    exact_divisor,
)
from drivers.reading import Quality

PROFILE_DIR: Final = Path(__file__).resolve().parent / "profiles"
MAX_BLOCK: Final = 125  # Modbus limit for one read of holding/input registers
TABLES: Final = ("holding", "input")
KINDS: Final = ("cluster", "pcs", "meter")
SUNS_MARKER: Final = (0x5375, 0x6E53)  # "SunS"
END_MODEL: Final = (0xFFFF, 0)

Decoded = tuple[Value, Quality]


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: used as a dict key per poll
class Block:
    """A contiguous register range read with one request."""

    name: str
    table: str
    start: int
    count: int
    # (offset in block, point) for every point inside, scale factors first
    members: tuple[tuple[int, Point], ...] = ()
    # precompiled for decode_blocks: scale factors (offset, key) and value points
    # (offset, key, decoder, scale factor key or None)
    sf_plan: tuple[tuple[int, str], ...] = ()
    value_plan: tuple[tuple[int, str, Decoder, str | None], ...] = ()

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass(frozen=True, slots=True)
class SunSpecModel:
    id: int
    length: int  # L: registers after the two-word header
    addr: int  # address of the model's ID register

    @property
    def data_start(self) -> int:
        return self.addr + 2

    @property
    def data_end(self) -> int:
        return self.addr + 2 + self.length


@dataclass(frozen=True, slots=True)
class RegisterImage:
    """Register values by address, per table (what a server holds)."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)

    def table(self, name: str) -> dict[int, int]:
        return self.holding if name == "holding" else self.input


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    kind: str
    description: str
    blocks: tuple[Block, ...]
    points: dict[str, Point]  # by key, value points only (no scale factors)
    sf_points: dict[str, Point]  # sunssf points by key (= their name unless the profile gives one)
    sunspec_base: int | None = None
    models: tuple[SunSpecModel, ...] = ()

    # --- queries ---------------------------------------------------------------------------
    def point(self, key: str) -> Point:
        try:
            return self.points[key]
        except KeyError:
            raise KeyError(f"profile {self.name!r} has no point {key!r}") from None

    @functools.cached_property
    def _writable(self) -> frozenset[str]:
        return frozenset(k for k, p in self.points.items() if p.writable)

    def writable_keys(self) -> frozenset[str]:
        # Asked for every PCS and cluster on every cycle: built once per (immutable) profile.
        return self._writable

    def state_name(self, code: int) -> str | None:
        """Canonical state name (drivers.keys.STATE_*) for a raw state code, None if unmapped."""
        p = self.points.get(keys.STATE)
        return p.states.get(code) if p is not None else None

    def default_sf(self) -> dict[str, int]:
        return {n: int(p.default) for n, p in self.sf_points.items() if isinstance(p.default, int)}

    # --- decoding --------------------------------------------------------------------------
    def decode_blocks(
        self, words: Mapping[Block, Sequence[int]], sf_cache: dict[str, int | None]
    ) -> dict[str, Decoded]:
        """Decode every value point of the blocks read. Updates sf_cache from their SF points
        first, so a point scaled by an SF in another block read in the same poll is right."""
        for block, regs in words.items():
            if len(regs) != block.count:
                raise ValueError(f"block {block.name!r}: {len(regs)} registers, expected {block.count}")
            for off, key in block.sf_plan:
                sf_cache[key] = decode_sf(regs[off])
        out: dict[str, Decoded] = {}
        get_sf = sf_cache.get
        for block, regs in words.items():
            for off, key, dec, sf_key in block.value_plan:
                out[key] = dec(regs, off, get_sf(sf_key) if sf_key is not None else None)
        return out

    def decode_image(self, image: RegisterImage) -> dict[str, Decoded]:
        """Decode every value point from a register image (missing registers read as 0)."""
        regs = {b: [image.table(b.table).get(a, 0) for a in range(b.start, b.end)] for b in self.blocks}
        return self.decode_blocks(regs, {})

    def value_in(self, key: str, image: RegisterImage) -> Decoded:
        """One point decoded from a register image (e.g. a setpoint a client wrote)."""
        p = self.point(key)
        regs = image.table(p.table)
        sf = None
        if p.scale_sf is not None:
            sfp = self.sf_points[p.scale_sf]
            sf = decode_sf(image.table(sfp.table).get(sfp.addr, 0))
        return decode(p, [regs.get(a, 0) for a in range(p.addr, p.addr + p.words)], sf)

    # --- encoding --------------------------------------------------------------------------
    def encode_image(
        self, values: Mapping[str, float | int | str | None], sf: Mapping[str, int] | None = None
    ) -> RegisterImage:
        """The register image serving `values` (by key): SunSpec marker and model headers,
        scale factors (the profile's defaults unless overridden in `sf`, by SF name), and
        every point; a point with no value and no default gets its "not implemented" marker
        (0 words in profiles without sentinels). Unknown keys raise KeyError."""
        unknown = set(values) - set(self.points)
        if unknown:
            raise KeyError(f"profile {self.name!r} has no point(s) {sorted(unknown)}")
        img = RegisterImage()
        if self.sunspec_base is not None:
            h = img.holding
            h[self.sunspec_base], h[self.sunspec_base + 1] = SUNS_MARKER
            for m in self.models:
                h[m.addr], h[m.addr + 1] = m.id, m.length
                for a in range(m.data_start, m.data_end):
                    h[a] = 0
            end = self.models[-1].data_end if self.models else self.sunspec_base + 2
            h[end], h[end + 1] = END_MODEL
        sfs: dict[str, int] = self.default_sf()
        if sf:
            sfs.update(sf)
        for name, p in self.sf_points.items():
            regs = img.table(p.table)
            v = sfs.get(name)
            regs[p.addr] = (v & 0xFFFF) if v is not None else 0x8000
        for key, p in self.points.items():
            pv = values.get(key, p.default)
            s = sfs.get(p.scale_sf) if p.scale_sf is not None else None
            no_marker = pv is None and not p.sentinel and p.type != "f32"
            words = [0] * p.words if no_marker else encode(p, pv, s)
            regs = img.table(p.table)
            for i, w in enumerate(words):
                regs[p.addr + i] = w
        return img


# --- loading ---------------------------------------------------------------------------------
def resolve(name_or_path: str | Path) -> Path:
    s = str(name_or_path)
    if "/" in s or s.endswith(".toml"):
        return Path(s)
    return PROFILE_DIR / f"{s}.toml"


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (file stem under drivers/profiles/) or path. Cached: profiles are
    immutable, and 64 clusters share one."""
    return _load(resolve(name_or_path).resolve())


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


@lru_cache(maxsize=64)
def _load(path: Path) -> Profile:
    return parse_profile(load_toml(path), path)


def parse_profile(data: dict[str, Any], path: Path) -> Profile:
    root = Table(data, str(path))
    dev = root.table("device", required=True)
    kind = dev.text("kind", choices=KINDS)
    description = dev.text("description", "")
    default_order = dev.text("word_order", "big", choices=("big", "little"))
    spec = root.table("sunspec") if root.has("sunspec") else None
    sentinels = dev.flag("sentinels", spec is not None)
    dev.done()

    base: int | None = None
    models: list[SunSpecModel] = []
    if spec is not None:
        base = spec.integer("base", 40000, lo=0, hi=0xFFFF)
        addr = base + 2
        for mt in spec.tables("model"):
            m = SunSpecModel(mt.integer("id", lo=1, hi=0xFFFE), mt.integer("length", lo=0, hi=0xFFFF), addr)
            mt.done()
            models.append(m)
            addr = m.data_end
        spec.done()
        if not models:
            spec.fail("model", "must list at least one [[sunspec.model]]")
        if addr + 2 > 0x10000:
            spec.fail("model", "chain runs past register 65535")

    blocks_raw: list[Block] = []
    for bt in root.tables("block"):
        b = Block(
            name=bt.text("name"),
            table=bt.text("table", "holding", choices=TABLES),
            start=bt.integer("start", lo=0, hi=0xFFFF),
            count=bt.integer("count", lo=1, hi=MAX_BLOCK),
        )
        bt.done()
        if b.end > 0x10000:
            bt.fail("count", f"block {b.name!r} runs past register 65535")
        blocks_raw.append(b)
    if not blocks_raw:
        root.fail("block", "must list at least one [[block]]")
    _check_block_overlap(path, blocks_raw)

    points: list[Point] = []
    for pt in root.tables("point"):
        points.append(_point(pt, blocks_raw, default_order, sentinels))
    root.done()
    _check_points(path, points, models)

    by_key: dict[str, Point] = {}
    sf_by_name: dict[str, Point] = {}
    for p in points:
        if p.type == "sunssf":
            if p.key in sf_by_name:
                raise ConfigError(f"{path}: scale factor key {p.key!r} is defined twice")
            sf_by_name[p.key] = p
        else:
            if p.key in by_key:
                raise ConfigError(f"{path}: point key {p.key!r} is used by {by_key[p.key].name!r} and {p.name!r}")
            by_key[p.key] = p
    for p in by_key.values():
        if p.scale_sf is not None and p.scale_sf not in sf_by_name:
            raise ConfigError(f"{path}: point {p.label}: scale_sf {p.scale_sf!r} names no sunssf point of this profile")

    blocks = tuple(_compile_block(b, points) for b in blocks_raw)
    return Profile(
        name=path.stem,
        path=path,
        kind=kind,
        description=description,
        blocks=blocks,
        points=by_key,
        sf_points=sf_by_name,
        sunspec_base=base,
        models=tuple(models),
    )


def _point(t: Table, blocks: Sequence[Block], default_order: str, sentinels: bool) -> Point:
    name = t.text("name")
    typ = t.text("type")
    if typ not in TYPE_WORDS:
        t.fail("type", f"of point {name!r}: unknown type {typ!r} (one of {', '.join(TYPE_WORDS)})")
    key = t.text("key", name if typ == "sunssf" else None)
    if key is None:
        t.fail("key", f"is required for point {name!r}")
    where = f"point {key!r} ({name})" if key != name else f"point {name!r}"

    def fail(k: str, problem: str) -> NoReturn:
        raise ConfigError(f"{t.where}: {where}: key '{k}' {problem}")

    addr = t.integer("addr", lo=0, hi=0xFFFF)
    if typ == "string":
        nwords = t.integer("words", lo=1, hi=MAX_BLOCK)
    else:
        if t.has("words"):
            fail("words", "is only for type string")
        nwords = TYPE_WORDS[typ]
    order = t.text("word_order", default_order, choices=("big", "little"))
    scale = t.number("scale", 1.0)
    if scale == 0:
        fail("scale", "must not be 0")
    scale_sf = t.text("scale_sf", None)
    unit = t.text("unit", "")
    rng_raw = t.raw("range")
    rng: tuple[float, float] | None = None
    if rng_raw is not None:
        ok = (
            isinstance(rng_raw, list)
            and len(rng_raw) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in rng_raw)
        )
        if not ok:
            fail("range", f"must be [min, max] numbers, got {rng_raw!r}")
        rng = (float(rng_raw[0]), float(rng_raw[1]))
        if not rng[0] <= rng[1]:
            fail("range", f"has min > max: {rng_raw!r}")
    writable = t.flag("writable", False)
    states: dict[int, str] = {}
    st = t.table("states")
    for code_s in list(st.data):
        try:
            code = int(code_s, 0)
        except ValueError:
            fail("states", f"code {code_s!r} is not an integer")
        states[code] = st.text(code_s, choices=keys.STATE_NAMES)
    st.done()
    default = t.raw("default")
    if default is not None and (isinstance(default, bool) or not isinstance(default, (int, float, str))):
        fail("default", f"must be a number or a string, got {default!r}")
    t.done()

    if typ == "sunssf":
        if scale != 1.0 or scale_sf is not None or states or writable:
            fail("type", "sunssf points take no scale, scale_sf, states or writable")
        if not isinstance(default, int) or not -10 <= default <= 10:
            fail("default", f"of a sunssf point must be the served scale factor (-10..10), got {default!r}")
    if typ == "string" and (scale != 1.0 or scale_sf is not None or states or rng is not None):
        fail("type", "string points take no scale, scale_sf, states or range")
    if (states or typ.startswith("bitfield")) and (scale != 1.0 or scale_sf is not None):
        fail("scale", "states and bitfields are raw codes; they take no scale or scale_sf")
    if states and typ not in ("u16", "i16", "u32", "i32"):
        fail("states", f"need an integer type, got {typ!r}")
    if isinstance(default, str) and typ != "string":
        fail("default", f"must be a number for type {typ}, got {default!r}")

    table = ""
    for b in blocks:
        if b.start <= addr < b.end:
            if addr + nwords > b.end:
                fail("addr", f"registers {addr}..{addr + nwords - 1} run past the end of block {b.name!r}")
            table = b.table
            break
    if not table:
        fail("addr", f"register {addr} lies outside every [[block]]")
    if writable and table != "holding":
        fail("writable", f"is set but block {table!r} registers cannot be written")
    return Point(
        key=key,
        name=name,
        addr=addr,
        type=typ,
        words=nwords,
        table=table,
        word_order=order,
        scale=scale,
        scale_sf=scale_sf,
        unit=unit,
        range=rng,
        writable=writable,
        states=states,
        default=default,
        sentinel=sentinels,
        divisor=exact_divisor(scale),
    )


def _compile_block(b: Block, points: Sequence[Point]) -> Block:
    members = tuple(
        sorted(
            ((p.addr - b.start, p) for p in points if p.table == b.table and b.start <= p.addr < b.end),
            key=lambda m: (m[1].type != "sunssf", m[0]),
        )
    )
    return Block(
        b.name,
        b.table,
        b.start,
        b.count,
        members,
        sf_plan=tuple((off, p.key) for off, p in members if p.type == "sunssf"),
        value_plan=tuple((off, p.key, decoder(p), p.scale_sf) for off, p in members if p.type != "sunssf"),
    )


def _check_block_overlap(path: Path, blocks: Iterable[Block]) -> None:
    seen: list[Block] = []
    for b in blocks:
        for o in seen:
            if o.table == b.table and b.start < o.end and o.start < b.end:
                raise ConfigError(f"{path}: [[block]] {b.name!r} overlaps [[block]] {o.name!r} ({b.table})")
        seen.append(b)


def _check_points(path: Path, points: Sequence[Point], models: Sequence[SunSpecModel]) -> None:
    owner: dict[tuple[str, int], Point] = {}
    for p in points:
        for a in range(p.addr, p.addr + p.words):
            o = owner.get((p.table, a))
            if o is not None:
                raise ConfigError(f"{path}: point {p.label} overlaps point {o.label} at register {a}")
            owner[(p.table, a)] = p
        inside = any(m.data_start <= p.addr and p.addr + p.words <= m.data_end for m in models)
        if models and p.table == "holding" and not inside:
            raise ConfigError(
                f"{path}: point {p.label} at register {p.addr} lies outside the data of every SunSpec model"
            )
