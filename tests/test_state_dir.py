"""An unusable state directory, and the ledger's file deleted while running (issue 15, item 4).

Before: `--state-dir` naming a plain file ended in a `FileExistsError` traceback, an immutable
directory in `sqlite3.OperationalError` (exit 1 both); `ledger.db` deleted under a running agent
was silent and everything recorded since was gone at the next restart.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.economics.ledger import Ledger, LedgerSample
from agent.economics.roi import economics_config
from agent.economics.tariff import load_tariff
from tests.agent_harness import agent_on_simulators, sim_site

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "agent" / "sites" / "demo.toml"


def run(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--site", str(DEMO), "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths given here are made immutable (chattr +i) by the test and made mutable again after."""
    paths: list[Path] = []
    yield paths
    for p in paths:
        subprocess.run(["chattr", "-i", str(p)], check=False)


def make_immutable(paths: list[Path], p: Path) -> None:
    r = subprocess.run(["chattr", "+i", str(p)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {r.stderr.strip()}")
    paths.append(p)


def test_a_plain_file_as_state_dir_exits_2_naming_it(tmp_path: Path) -> None:
    f = tmp_path / "state"
    f.write_text("not a directory")
    r = run(f)
    assert (r.returncode, r.stderr.strip()) == (2, f"ems-agent: state directory {f}: exists and is not a directory")


def test_a_state_dir_below_a_plain_file_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    d = tmp_path / "file" / "state"
    r = run(d)
    expected = f"ems-agent: state directory {d}: cannot be created: Not a directory"
    assert (r.returncode, r.stderr.strip()) == (2, expected)


IMMUTABLE = {  # what is made immutable -> the problem named
    "": "cannot write a file in it: Operation not permitted",
    "ledger.db": "file 'ledger.db' is read-only or immutable",
}


@pytest.mark.parametrize("name", sorted(IMMUTABLE))
def test_an_immutable_state_dir_or_state_file_exits_2_naming_it(
    tmp_path: Path, immutable: list[Path], name: str
) -> None:
    d = tmp_path / "state"
    d.mkdir()
    if name:
        (d / name).write_bytes(b"")
    make_immutable(immutable, d / name if name else d)
    r = run(d)
    assert (r.returncode, r.stderr.strip()) == (2, f"ems-agent: state directory {d}: {IMMUTABLE[name]}")
    assert "Traceback" not in r.stderr


def _open_fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return out


async def test_ledger_db_deleted_while_running_is_recreated_with_its_content_and_an_alarm(tmp_path: Path) -> None:
    site = sim_site(cycle_s=0.25)
    state = tmp_path / "state"
    state.mkdir()
    db = state / "ledger.db"
    assert site.tariff_path is not None
    # One closed interval recorded by an earlier run: 15 min at 1 s, then the sample that closes it.
    led = Ledger(db, load_tariff(site.tariff_path), economics_config(site))
    t0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC).timestamp()
    for k in range(901):
        led.feed(LedgerSample(t0 + k, 90_000.0, -10_000.0, 80_000.0, True, True, True))
    led.close()
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM intervals").fetchone() == (1,)

    async with agent_on_simulators(state, site, api=False) as h:
        await h.cycles(2)
        for suffix in ("", "-wal", "-shm"):  # `rm ledger.db*`
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        await h.until(lambda: any(a.code == "state_file_lost" for a in h.rt.hub.alarms.active()), 10.0, "the alarm")
        (alarm,) = [a for a in h.rt.hub.alarms.active() if a.code == "state_file_lost"]
        assert (alarm.source, alarm.message) == (
            "ledger", f"{db} was deleted while running: recreated from the open database, nothing lost"
        )
        assert db.is_file()
        check = sqlite3.connect(db)
        assert check.execute("SELECT COUNT(*) FROM intervals").fetchone() == (1,)  # the earlier run's interval
        check.close()
        fds = _open_fds()
        assert str(db) in fds  # the agent now writes the file at the path ...
        assert f"{db} (deleted)" not in fds  # ... and holds the deleted one no more
        await h.cycles(2)
        assert [a.code for a in h.rt.hub.alarms.active()].count("state_file_lost") == 1  # raised once
        assert h.rt.hub.alarms.ack(alarm.id, "ops")
        await h.cycles(2)
        assert "state_file_lost" not in [a.code for a in h.rt.hub.alarms.active()]  # seen, so cleared
