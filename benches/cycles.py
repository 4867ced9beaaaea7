"""Where a box's time goes: runs rounds of `--boxes` concurrent create + start + exec(true) +
remove cycles and prints, per box, the wall time of a round and the CPU time the whole machine
spent (from /proc/stat: the runtime's process, the boxes' processes and the kernel's threads
alike), with the part of it the runtime's own process took. Run it under `perf record -a -g`
to see by whom.

    python -m benches.cycles --boxes 1 --rounds 300    # one at a time
    python -m benches.cycles --boxes 100 --rounds 3    # bursts
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import boxlite

# /proc/stat's cpu line: user nice system idle iowait irq softirq steal ...
IDLE_FIELDS = (3, 4)


def _cpu_ticks() -> tuple[int, int]:
    """Busy and idle ticks of the whole machine."""
    fields = [int(value) for value in open("/proc/stat").readline().split()[1:]]
    idle = sum(fields[index] for index in IDLE_FIELDS)
    return sum(fields) - idle, idle


async def main(boxes: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as home, boxlite.Boxlite(boxlite.Options(home_dir=home)) as runtime:

        async def cycle() -> None:
            box = await runtime.create(boxlite.BoxOptions())
            await box.start()
            await (await box.exec("/bin/true")).wait()
            await runtime.remove(box.id, force=True)

        await cycle()  # the home's host:// skeleton, once
        await asyncio.sleep(1)
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        busy, idle = _cpu_ticks()
        own = os.times()
        started = time.perf_counter()
        for _ in range(rounds):
            await asyncio.gather(*[cycle() for _ in range(boxes)])
        wall = time.perf_counter() - started
        ended, own_end = _cpu_ticks(), os.times()
        count = boxes * rounds
        print(f"{wall * 1000 / rounds:.1f} ms per round of {boxes}; per box: machine CPU {(ended[0] - busy) * tick_ms / count:.2f} ms "
              f"(idle {(ended[1] - idle) * tick_ms / count:.2f} ms), of which the runtime's process "
              f"{((own_end.user - own.user) + (own_end.system - own.system)) * 1000 / count:.2f} ms")
        await runtime.shutdown(timeout=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=100, help="cycles at once")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.boxes, arguments.rounds))
