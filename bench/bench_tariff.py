"""A tariff for the benches by name: the bench's own fixtures (bench/tariffs/, tariffs made up to test
the policy off the ones it was tuned on) first, then the ones the agent ships (agent/economics/tariffs/)."""

from __future__ import annotations

from pathlib import Path

from agent.economics.tariff import TARIFF_DIR, Tariff, load_tariff

BENCH_TARIFFS = Path(__file__).parent / "tariffs"


def tariff(name: str) -> Tariff:
    """`name` is a file stem in bench/tariffs/ or agent/economics/tariffs/; ValueError names both."""
    for d in (BENCH_TARIFFS, TARIFF_DIR):
        if (d / f"{name}.toml").is_file():
            return load_tariff(d / f"{name}.toml")
    known = sorted({p.stem for d in (BENCH_TARIFFS, TARIFF_DIR) for p in d.glob("*.toml")})
    raise ValueError(f"no tariff {name!r} in {BENCH_TARIFFS} or {TARIFF_DIR} (known: {', '.join(known)})")
