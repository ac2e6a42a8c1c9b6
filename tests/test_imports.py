"""Imports run one way: drivers depend on nothing of the agent, the simulators' site and control
socket do not import each other, the live agent (`ems-agent run`) loads neither the simulators
nor the offline analysis' libraries, and no module of the project imports itself round a circle.

The graph is read from the source: every import statement, lazy ones inside functions included
(a lazy import hides a circle, it does not remove it); those under `if TYPE_CHECKING:` never run
and count only where a test says so."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "drivers", "simulators", "common")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = p
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            for b in n.body:
                skip.update(id(x) for x in ast.walk(b))
    return skip


def _imported(name: str, path: Path, typing: bool) -> set[str]:
    """Dotted names `name` imports (modules, and module.attribute for `from m import attr`);
    with `typing`, those under `if TYPE_CHECKING:` too."""
    tree = ast.parse(path.read_text(), str(path))
    skip = set() if typing else _type_checking_nodes(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for n in ast.walk(tree):
        if id(n) in skip:
            continue
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = package[: len(package) - (n.level - 1)]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in n.names)
    return out


def import_graph(typing: bool = False) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (the longest prefix that is a module)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for imp in _imported(name, path, typing):
            while imp and imp not in mods:
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                deps.add(imp)
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    group.append(x)
                    if x == v:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(g) == [["a", "b", "c"]]


def test_no_import_circles() -> None:
    # a package importing its own submodules is how Python packages work, not a circle: leave
    # out the edge from a module to the package that contains it
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in import_graph().items()}
    assert circles(graph) == []


def test_drivers_and_common_depend_on_nothing_of_the_agent() -> None:
    graph = import_graph()
    wrong = {
        m: sorted(d for d in deps if not d.startswith(m.split(".")[0]) and d.split(".")[0] != "common")
        for m, deps in graph.items()
        if m.split(".")[0] in ("drivers", "common")
    }
    assert {m: d for m, d in wrong.items() if d} == {}


def test_the_simulated_site_and_its_control_socket_do_not_import_each_other() -> None:
    graph = import_graph(typing=True)  # a type-only import still ties the two together
    assert "simulators.control" in graph["simulators.site"]  # the site serves its control socket
    assert "simulators.site" not in graph["simulators.control"]


def test_the_live_agent_loads_neither_simulators_nor_the_offline_libraries() -> None:
    """What `ems-agent run` imports before it starts: its command line and the runtime."""
    code = (
        "import sys\n"
        "from agent.cli import _command, build_parser\n"
        "build_parser(_command(['run', '--site', 'site.toml']))\n"
        "import agent.live.runtime, agent.api.process\n"
        "heavy = {'simulators', 'scipy', 'highspy', 'matplotlib'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('agent.offline')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_every_subcommand_is_registered_where_the_command_line_looks_for_it() -> None:
    from agent.cli import SUBCOMMANDS, build_parser

    for command, module in SUBCOMMANDS.items():
        parser = build_parser(command)
        sub = next(a for a in parser._actions if a.dest == "command")
        assert command in sub.choices, (command, module)  # type: ignore[operator]
    every = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(every.choices or ()) == set(SUBCOMMANDS)


def test_benches_import_the_installed_package_without_editing_sys_path() -> None:
    edits = [p.name for p in sorted((ROOT / "bench").glob("*.py")) if "sys.path" in p.read_text()]
    assert edits == []
