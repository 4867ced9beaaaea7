"""A benchmark harness in miniature: runs a batch of Python snippets, each in a box of its own,
at most ``--at-once`` at a time, and collects each one's output and exit code. The same code
runs on a local runtime or, with ``--ray``, on the nodes of a Ray cluster: only the line that
makes the runtime differs.

    python examples/snippet_harness.py HOME                   # a local runtime on HOME
    python examples/snippet_harness.py HOME --ray ADDRESS     # a Ray cluster (HOME on each node)

Uses the built-in ``host://`` image, so it needs no network.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import boxlite

SNIPPETS = {
    "squares": "print(sum(n * n for n in range(1000)))",
    "primes": "print([n for n in range(2, 50) if all(n % d for d in range(2, n))][-3:])",
    "fails": "raise SystemExit('this snippet fails on purpose')",
    "reads-stdin": "import sys; print(sys.stdin.read().upper())",
    "hostname": "import socket; print(socket.gethostname() != '')",
    "loops-forever": "while True: pass",
}
STDIN = {"reads-stdin": b"given on stdin\n"}
TIME_LIMIT_SECONDS = 5


async def run_snippet(runtime: Any, name: str, code: str, limit: asyncio.Semaphore) -> tuple[str, int | str, str, str]:
    async with limit:
        box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE))
        try:
            execution = await box.exec("python3", ["-c", code], timeout_secs=TIME_LIMIT_SECONDS)
            stdin = execution.stdin()
            if name in STDIN:
                await stdin.send_input(STDIN[name])
            await stdin.close()
            stdout, stderr = await asyncio.gather(collect(execution.stdout()), collect(execution.stderr()))
            status = await execution.wait()
            outcome = "timeout" if status.timed_out else status.exit_code
            return name, outcome, stdout.strip(), stderr.strip().splitlines()[-1] if stderr.strip() else ""
        finally:
            await runtime.remove(box.id, force=True)


async def collect(stream: Any) -> str:
    return "".join([chunk async for chunk in stream])


async def main(home: str, ray_address: str | None, at_once: int) -> int:
    if ray_address is None:
        runtime: Any = boxlite.Boxlite(boxlite.Options(home_dir=home))
    else:
        runtime = boxlite.Boxlite.ray(boxlite.RayOptions(address=ray_address, namespace="snippet-harness", home_dir=home))
    limit = asyncio.Semaphore(at_once)
    try:
        results = await asyncio.gather(*(run_snippet(runtime, name, code, limit) for name, code in SNIPPETS.items()))
    finally:
        if ray_address is not None:
            await runtime.shutdown()
        runtime.close()
    for name, outcome, stdout, stderr in results:
        print(f"{name:14} {outcome!s:>8}  {stdout or stderr}")
    expected = {"squares": 0, "primes": 0, "fails": 1, "reads-stdin": 0, "hostname": 0, "loops-forever": "timeout"}
    return 0 if {name: code for name, code, _, _ in results} == expected else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("home", nargs="?", default="bl-home", help="the runtime's home directory (on every node, with --ray)")
    parser.add_argument("--ray", metavar="ADDRESS", help="run the boxes on this Ray cluster")
    parser.add_argument("--at-once", type=int, default=3, help="snippets running at the same time")
    arguments = parser.parse_args()
    raise SystemExit(asyncio.run(main(arguments.home, arguments.ray, arguments.at_once)))
