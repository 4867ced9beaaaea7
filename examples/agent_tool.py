"""An agent's "run this code" tool: each snippet in a fresh box with limits and a timeout,
several at once, output streamed as it comes. Needs no network.

Run: ``python examples/agent_tool.py [home-dir]``.
"""

from __future__ import annotations

import asyncio
import sys

import boxlite

SNIPPETS = {
    "fine": "print(sum(i * i for i in range(1000)))",
    "crashes": "raise SystemExit('model-written bug')",
    "runs forever": "import time\nwhile True: time.sleep(1)",
    "floods memory": "blocks = [bytearray(1 << 20) for _ in range(4096)]",
}


async def run_snippet(runtime: boxlite.Boxlite, label: str, code: str) -> str:
    limits = boxlite.SecurityOptions(max_processes=64, max_open_files=256)
    options = boxlite.BoxOptions(memory_mib=128, cpus=1, advanced=boxlite.AdvancedBoxOptions(security=limits))
    async with await runtime.create(options) as box:
        execution = await box.exec("python3", ["-c", code], timeout_secs=2)
        stdout, stderr = await asyncio.gather(
            asyncio.ensure_future(collect(execution.stdout())), asyncio.ensure_future(collect(execution.stderr()))
        )
        status = await execution.wait()
    verdict = "timed out" if status.timed_out else f"exit {status.exit_code}"
    return f"{label:14} {verdict:10} stdout={stdout.strip()!r} stderr={stderr.strip()[-40:]!r}"


async def collect(stream: boxlite.ExecStream) -> str:
    return "".join([str(chunk) async for chunk in stream])


async def main(home: str) -> int:
    with boxlite.Boxlite(boxlite.Options(home_dir=home)) as runtime:
        reports = await asyncio.gather(*(run_snippet(runtime, label, code) for label, code in SNIPPETS.items()))
        print("\n".join(reports))
        return 0 if len(await runtime.list_info()) == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "bl-home")))
