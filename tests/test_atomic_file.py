"""A state file is replaced whole: the data on disk before the rename, the old file kept when a write fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.atomic_file import replace_text


def test_the_new_text_replaces_the_old_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    p = tmp_path / "limit_state.json"
    p.write_text("old", encoding="utf-8")
    replace_text(p, '{"key": 7, "note": "é"}')
    assert p.read_text(encoding="utf-8") == '{"key": 7, "note": "é"}'
    assert sorted(x.name for x in tmp_path.iterdir()) == ["limit_state.json"]


def test_the_data_is_fsynced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a power cut between an unsynced write and its rename leaves an empty file on ext4: the order is the contract
    p = tmp_path / "campus_state.json"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    replace_text(p, "x")
    assert events == ["fsync file", "replace", "fsync dir"]


def test_a_write_that_fails_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "planner_history.csv"
    p.write_text("the old rows\n", encoding="utf-8")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        replace_text(p, "the new rows\n")
    assert p.read_text(encoding="utf-8") == "the old rows\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["planner_history.csv"]
