"""The planner's history file: what survives a restart, a torn line, a hand edit, a missing file."""

from __future__ import annotations

from pathlib import Path

from agent.live.plan_history import FILE_NAME, HEADER, Interval, PlanHistory


def rows(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]


def test_appended_intervals_are_read_back_in_order(tmp_path: Path) -> None:
    h = PlanHistory(tmp_path / FILE_NAME, keep=10)
    assert h.load() == (
        [],
        [f"planner history {h.path}: not found: cold start (the heuristic until a day is recorded)"],
    )
    recent: list[Interval] = []
    for k in range(3):
        iv = Interval(1_764_547_200.0 + 900.0 * k, 4_000_000.0 + k, 3_500_000.5)
        recent.append(iv)
        h.append(iv, recent)
    assert h.path.read_text().startswith(HEADER)
    assert rows(h.path) == [
        "1764547200,4000000.0,3500000.5",
        "1764548100,4000001.0,3500000.5",
        "1764549000,4000002.0,3500000.5",
    ]
    again, warnings = PlanHistory(h.path, keep=10).load()
    assert again == recent and warnings == []


def test_bad_lines_are_named_skipped_and_the_file_repaired(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    # a hand edit (line 3), a line with a field missing (line 4), then a line torn by a power cut
    path.write_text(HEADER + "100,1.0,2.0\nhello\n200,3.0\n300,nan,4.0\n400,5.0,6")
    h = PlanHistory(path, keep=10)
    got, warnings = h.load()
    # NaN readings are kept: the forecast drops them with its own named warning
    assert [(r.start_s, r.grid_w) for r in got] == [(100.0, 2.0), (300.0, 4.0), (400.0, 6.0)]
    assert warnings == [f"planner history {path}: 2 unreadable line(s) skipped (first: line 3); 3 interval(s) kept"]
    # rewritten whole: the torn tail ends in a newline, so the next append starts a line of its own
    assert rows(path) == ["100,1.0,2.0", "300,nan,4.0", "400,5.0,6.0"]
    h.append(Interval(500.0, 7.0, 8.0), [*got, Interval(500.0, 7.0, 8.0)])
    assert rows(path)[-1] == "500,7.0,8.0"


def test_binary_garbage_is_a_cold_start_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b"\x00\xff\xfe garbage \x00\n\x01\x02")
    got, warnings = PlanHistory(path, keep=10).load()
    assert got == []
    assert warnings == [f"planner history {path}: 2 unreadable line(s) skipped (first: line 1); 0 interval(s) kept"]
    assert rows(path) == []


def test_only_what_the_forecast_reads_is_kept(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_text(HEADER + "".join(f"{t},1.0,1.0\n" for t in range(10)))
    h = PlanHistory(path, keep=4)
    got, _ = h.load()
    assert [r.start_s for r in got] == [6.0, 7.0, 8.0, 9.0]
    assert rows(path) == [f"{t},1.0,1.0" for t in range(6, 10)]
    # appending grows it to twice what is kept, then it is rewritten to what is kept
    recent = list(got)
    for t in range(10, 15):
        recent.append(Interval(float(t), 1.0, 1.0))
        h.append(recent[-1], recent)
    assert rows(path) == [f"{t},1.0,1.0" for t in range(11, 15)]
