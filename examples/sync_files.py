"""The sync API with files: a host directory mounted read-only, results copied back out. Needs
no network.

Run: ``python examples/sync_files.py [home-dir]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import boxlite
from boxlite.sync_api import SyncBoxlite


def main(home: str) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        inputs = Path(scratch) / "inputs"
        inputs.mkdir()
        (inputs / "numbers.txt").write_text("\n".join(str(n) for n in range(1, 101)))
        options = boxlite.BoxOptions(volumes=[(str(inputs), "/inputs", True)])
        with SyncBoxlite(boxlite.Options(home_dir=home)) as runtime:
            box = runtime.create(options)
            run = box.exec("sh", ["-c", "mkdir -p /out && awk '{s+=$1} END {print s}' /inputs/numbers.txt > /out/sum.txt"])
            if run.wait().exit_code != 0:
                return 1
            box.copy_out("/out/sum.txt", scratch)
            box.stop()
        total = (Path(scratch) / "sum.txt").read_text().strip()
        print("sum computed in the box:", total)
        return 0 if total == "5050" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "bl-home"))
