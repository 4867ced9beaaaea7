"""What a box leaves on the machine, looked for from outside the runtime: its processes and its
cgroups. The tests' leak checks and the fault bench use these (on any build of boxlite)."""

from __future__ import annotations

import os
from pathlib import Path

#: Where boxes' id ranges are claimed on this host (one file per claimed range).
ID_RANGE_CLAIMS = Path("/var/lib/boxlite/id-ranges")


def box_processes(home: Path) -> list[int]:
    """Pids of box inits started from ``home`` (their executable lives in ``home/bin``)."""
    prefix = str(home.resolve() / "bin") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe")
        except OSError:
            continue
        if exe.startswith(prefix):
            found.append(int(entry))
    return found


def own_cgroup(controller: str) -> str:
    """This process's group in a v1 hierarchy (``""`` for the v2 one)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path
    return "/"


def cgroup_parent(controller: str) -> Path:
    """Where boxes' groups go for a v1 controller: inside this process's own group."""
    return Path("/sys/fs/cgroup") / controller / own_cgroup(controller).lstrip("/") / "boxlite"


CGROUP_PARENTS = [cgroup_parent(name) for name in ("memory", "pids", "cpu", "cpuacct")] + [
    Path("/sys/fs/cgroup") / Path(own_cgroup("")).parent.relative_to("/") / "boxlite",
    Path("/sys/fs/cgroup/unified") / Path(own_cgroup("")).parent.relative_to("/") / "boxlite",
]


def box_cgroups() -> set[Path]:
    return {group for parent in CGROUP_PARENTS if parent.is_dir() for group in parent.iterdir() if group.is_dir()}
