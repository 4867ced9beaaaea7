"""The main job: create a box, run a command in it, print its output and exit status.

Uses the built-in ``host://`` image (the host's /usr, read-only, under a private root), so it
needs no network. Run: ``python examples/quickstart.py [home-dir]``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import boxlite

SCRIPT = """
echo "hostname: $(hostname)"
echo "id:       $(id)"
echo "uname:    $(uname -srm)"
echo "python:   $(python3 -c 'import sys; print(sys.version.split()[0], sum(range(10)))')"
echo "processes visible: $(ls /proc | grep -c '^[0-9]')"
echo "to stderr" >&2
exit 3
"""


async def main(home: str) -> int:
    with boxlite.Boxlite(boxlite.Options(home_dir=home)) as runtime:
        box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE), name="quickstart")
        async with box:
            execution = await box.exec("sh", ["-c", SCRIPT])

            async def pump(stream: boxlite.ExecStream, sink: TextIO) -> None:
                async for chunk in stream:
                    sink.write(chunk)

            await asyncio.gather(pump(execution.stdout(), sys.stdout), pump(execution.stderr(), sys.stderr))
            status = await execution.wait()
            print(f"exit status: {status.exit_code}")
            return 0 if status.exit_code == 3 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "bl-home")))
