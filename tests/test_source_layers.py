"""The crates are layered: no module of a crate reaches, through others, back to itself.

A module here is a crate's top-level module (`src/dispatcher.rs` or `src/dispatcher/`); it
depends on each module its code names as `crate::name`. A cycle means the lower layer knows the
upper one (as the async core once named the `Box` and `Execution` classes), so a change in
either needs the other.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
CRATES = sorted((ROOT / "rust").glob("*/src"))
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def module_graph(src: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for file in sorted(src.rglob("*.rs")):
        first = file.relative_to(src).parts[0]
        module = first.removesuffix(".rs")
        if module in ("lib", "main"):
            continue
        code = "\n".join(line for line in file.read_text().splitlines() if not line.lstrip().startswith("//"))
        graph.setdefault(module, set()).update(name for name in CRATE_PATH.findall(code) if name != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for needed in sorted(graph[module] & graph.keys()):
            if state.get(needed) == "open":
                found.append(path[path.index(needed) :] + [needed])
            elif needed not in state:
                visit(needed)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_crate_is_found() -> None:
    assert {src.parent.name for src in CRATES} >= {"core", "python", "shim", "protocol"}


def test_no_crate_has_a_module_cycle() -> None:
    found = {src.parent.name: cycles(module_graph(src)) for src in CRATES}
    assert all(not crate_cycles for crate_cycles in found.values()), {name: [" -> ".join(cycle) for cycle in crate_cycles] for name, crate_cycles in found.items() if crate_cycles}
