"""What a box leaves on the machine, looked for from outside the runtime: its processes and its
cgroups. The tests' leak checks and the fault bench use these (on any build of boxlite)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

#: Where boxes' id ranges are claimed on this host (one file per claimed range).
ID_RANGE_CLAIMS = Path("/var/lib/boxlite/id-ranges")


def _command_lines() -> Iterator[tuple[int, list[bytes]]]:
    """Each process's pid and command line (its arguments), of those that can be read.
    An ordinary user may read its boxes' processes' command lines (their executable link it
    may not: they are not dumpable)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            yield int(entry), Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue


def box_processes(home: Path) -> list[int]:
    """Pids of box inits started from ``home`` (their executable lives in ``home/bin``)."""
    prefix = (str(home.resolve() / "bin") + "/").encode()
    return [pid for pid, command in _command_lines() if command[0].startswith(prefix)]


def _processes_with(*arguments: bytes, without: bytes | None = None) -> list[int]:
    """Pids of processes whose command line has each of ``arguments`` (and not ``without``)."""
    return [pid for pid, command in _command_lines() if all(argument in command for argument in arguments) and without not in command]


def guardians() -> list[int]:
    """Pids of runtimes' guardians of their detached boxes' networks (the shim with
    ``--guard``), of any home: a runtime's own process, while it runs."""
    return _processes_with(b"--guard")


def keepers(home: Path) -> list[int]:
    """Pids of keepers serving ``home``'s detached boxes' networks (``python -m
    boxlite._keeper HOME``; a guardian's command line names it too)."""
    return _processes_with(b"boxlite._keeper", str(home.resolve()).encode(), without=b"--guard")


def own_cgroup(controller: str) -> str:
    """This process's group in a v1 hierarchy (``""`` for the v2 one)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path
    return "/"


#: A group delegated for boxes (the runtime's BOXLITE_CGROUP_PARENT), in every hierarchy.
DELEGATED = os.environ.get("BOXLITE_CGROUP_PARENT", "")


def cgroup_parent(controller: str) -> Path:
    """Where boxes' groups go for a v1 controller: inside this process's own group, or the
    delegated one."""
    return Path("/sys/fs/cgroup") / controller / (DELEGATED or own_cgroup(controller)).lstrip("/") / "boxlite"


def v2_parent() -> Path:
    """Where boxes' groups go on the v2 hierarchy: beside this process's own group, or in the
    delegated one."""
    return Path("/sys/fs/cgroup") / (DELEGATED or str(Path(own_cgroup("")).parent)).lstrip("/") / "boxlite"


CGROUP_PARENTS = [cgroup_parent(name) for name in ("memory", "pids", "cpu", "cpuacct", "freezer")] + [
    v2_parent(),
    Path("/sys/fs/cgroup/unified") / v2_parent().relative_to("/sys/fs/cgroup"),
]


def box_cgroups() -> set[Path]:
    return {group for parent in CGROUP_PARENTS if parent.is_dir() for group in parent.iterdir() if group.is_dir()}
