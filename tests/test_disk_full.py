"""A home on a full filesystem: each operation that needs room fails with a typed error and
leaves nothing half-made, the boxes that run go on running, and once there is room again
everything works."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import boxlite

from .conftest import collect
from .leftovers import box_processes
from .registry import Registry

CLAIMS = Path("/var/lib/boxlite/id-ranges")


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount / "home"
    finally:
        for pid in box_processes(mount / "home"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Writes a file until the filesystem has no byte left."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as file:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    file.write(b"\0" * size)
    return filler


def claims_of(home: Path) -> list[Path]:
    prefix = str(home.resolve())
    return [claim for claim in CLAIMS.glob("[0-9]*") if claim.read_text().startswith(prefix)] if CLAIMS.is_dir() else []


async def test_a_full_disk_fails_each_operation_cleanly_and_loses_nothing(small_home: Path, busybox_image: str, tmp_path: Path) -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(small_home)))
    try:
        running = await runtime.create(boxlite.BoxOptions(auto_remove=False))
        await running.start()
        big = tmp_path / "big"
        big.write_bytes(b"x" * (4 << 20))
        filler = fill(small_home)
        boxes_before = sorted(path.name for path in (small_home / "boxes").iterdir())

        # An image that must be unpacked, and a new box's record: no room for either.
        with pytest.raises(boxlite.BoxliteError, match="No space left"):
            await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image))
        with pytest.raises(boxlite.BoxliteError, match="No space left"):
            await runtime.create(boxlite.BoxOptions())
        assert sorted(path.name for path in (small_home / "boxes").iterdir()) == boxes_before
        assert list((small_home / "layers" / "tmp").iterdir()) == []
        assert [claim.read_text() for claim in claims_of(small_home)] == [str(small_home.resolve() / "boxes" / running.id)]
        assert len(await runtime.list_info()) == 1

        # A copy into a box that has no room: an error, and no partial file in the box.
        with pytest.raises(boxlite.BoxliteError, match="No space left"):
            await running.copy_in(str(big), "/root/big")
        stdout, _, _ = await collect(await running.exec("sh", ["-c", "ls /root; echo done"]))
        assert stdout == b"done\n"
        # Output travels through pipes: a full disk does not stop an execution or its output.
        stdout, _, status = await collect(await running.exec("sh", ["-c", "head -c 100000 /dev/zero | wc -c; echo x > /root/no-room"]))
        assert stdout == b"100000\n" and status.exit_code != 0

        filler.unlink()
        box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image))
        stdout, _, _ = await collect(await box.exec("echo", ["room again"]))
        assert stdout == b"room again\n"
        await running.copy_in(str(big), "/root/big")
        stdout, _, _ = await collect(await running.exec("wc", ["-c", "/root/big"]))
        assert stdout.split()[0] == str(4 << 20).encode()
        await box.stop()
        await running.stop()
        await runtime.remove(running.id, force=True)
    finally:
        runtime.close()


async def test_a_pull_onto_a_full_disk_fails_cleanly(small_home: Path, busybox_image: str, tmp_path: Path) -> None:
    server = Registry(tmp_path / "registry")
    try:
        server.push(Path(busybox_image), "test/busybox", "1")
        registries = [boxlite.ImageRegistry(host=server.host, transport="http")]
        runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(small_home), image_registries=registries))
        try:
            filler = fill(small_home)
            reference = f"{server.host}/test/busybox:1"
            with pytest.raises(boxlite.BoxliteError, match="No space left"):
                await runtime.images.pull(reference)
            assert await runtime.images.list() == []
            for scratch in ("blobs/tmp", "layers/tmp"):
                assert list((small_home / scratch).iterdir()) == [], scratch
            filler.unlink()
            assert (await runtime.images.pull(reference)).reference == reference
        finally:
            runtime.close()
    finally:
        server.stop()
