"""A directory of Ray's own for one cluster of the tests or benches."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def private_ray_temp() -> Iterator[str]:
    """Ray's session files go to a directory of this run's own (a run as another user, or at the
    same time, does not meet them); so does the address file Ray writes to its default directory
    even when given another, which need not exist on a fresh machine (``RAY_TMPDIR`` moves it)."""
    base = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    temp = os.path.join(base, "ray")
    os.mkdir(temp)
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = base
    try:
        yield temp
    finally:
        if previous is None:
            del os.environ["RAY_TMPDIR"]
        else:
            os.environ["RAY_TMPDIR"] = previous
        shutil.rmtree(base, ignore_errors=True)
