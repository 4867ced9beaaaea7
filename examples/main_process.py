"""A box with a main process: it starts with the box, ``attach()`` follows its output, and its
exit code stays on the box. Needs no network.

Run: ``python examples/main_process.py [home-dir]``.
"""

from __future__ import annotations

import asyncio
import sys

import boxlite

JOB = "for step in 1 2 3; do echo step $step; sleep 0.1; done; echo warning >&2; exit 7"


async def main(home: str) -> int:
    with boxlite.Boxlite(boxlite.Options(home_dir=home)) as runtime:
        box = await runtime.create(boxlite.BoxOptions(cmd=["sh", "-c", JOB], auto_remove=False), name="job")
        await box.start()
        main_process = await box.attach()
        async for chunk in main_process.stdout():
            print("box says:", chunk, end="")
        status = await main_process.wait()
        print("main process exited with", status.exit_code)
        while (info := await box.info()).state.status != "stopped":
            await asyncio.sleep(0.01)
        print("box is", info.state.status, "with exit code", info.state.exit_code)
        await runtime.remove(box.id)
        return 0 if info.state.exit_code == 7 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "bl-home")))
