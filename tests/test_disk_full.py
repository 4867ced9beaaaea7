"""A home on a full filesystem: each operation that needs room fails with a typed error and
leaves nothing half-made, the boxes that run go on running, and once there is room again
everything works."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import boxlite

from .conftest import collect
from .leftovers import ID_RANGE_CLAIMS, box_processes
from .registry import Registry


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
    return [claim for claim in ID_RANGE_CLAIMS.glob("[0-9]*") if claim.read_text().startswith(prefix)] if ID_RANGE_CLAIMS.is_dir() else []


@pytest.mark.root_only("the full disk is a tmpfs the test mounts")
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


@pytest.mark.root_only("the full disk is a tmpfs the test mounts")
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


def loop_devices_of(home: Path) -> list[str]:
    listing = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if str(home.resolve()) in line]


@pytest.mark.root_only("a disk of a box's own is a loop device")
async def test_a_box_with_a_disk_of_its_own_fills_it_and_nothing_else(runtime: boxlite.Boxlite, home: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(disk_size_gb=1, auto_remove=False))
    other = await runtime.create(boxlite.BoxOptions())
    host_free_before = os.statvfs(home).f_bavail * os.statvfs(home).f_frsize
    # Writes past the size fail inside the box with ENOSPC; what fit stays.
    script = "echo kept > /root/small; head -c 1500000000 /dev/zero > /root/fill; echo status=$?; df -k / | tail -1; cat /root/small"
    stdout, stderr, _ = await collect(await box.exec("sh", ["-c", script]))
    assert b"status=1" in stdout and b"No space left" in stderr, (stdout, stderr)
    status_line, df_line, kept = stdout.decode().splitlines()
    assert kept == "kept" and int(df_line.split()[1]) < 1100 * 1024, "the box sees a filesystem of its disk's size"
    metrics = await box.metrics()
    assert metrics.disk_bytes is not None and 900 << 20 < metrics.disk_bytes < 1200 << 20
    # The home's filesystem lost at most the disk's size, and the other box writes on.
    assert host_free_before - os.statvfs(home).f_bavail * os.statvfs(home).f_frsize < 1200 << 20
    assert (await collect(await other.exec("sh", ["-c", "head -c 10000000 /dev/zero > /root/ok && echo ok"])))[0] == b"ok\n"
    # The files stay across a restart; the loop device goes with the box.
    await box.stop()
    await runtime.get(box.id)
    assert loop_devices_of(home) == []
    restarted = await runtime.get(box.id)
    assert restarted is not None
    stdout, _, _ = await collect(await restarted.exec("sh", ["-c", "rm /root/fill; cat /root/small; stat -c %u /root"]))
    assert stdout == b"kept\n0\n"
    # What the box deleted is given back to the host (the disk is mounted with discard).
    for _ in range(100):
        used = (await restarted.metrics()).disk_bytes
        if used is not None and used < 200 << 20:
            break
        await asyncio.sleep(0.1)
    assert used is not None and used < 200 << 20, used
    await restarted.stop()
    await runtime.remove(box.id)
    assert loop_devices_of(home) == [] and not (home / "boxes" / box.id).exists()


@pytest.mark.root_only("a disk of a box's own is a loop device")
async def test_a_disk_for_every_box_is_named_by_the_environment_and_none_by_default(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def disk_kib(box: boxlite.Box) -> int:
        stdout, _, _ = await collect(await box.exec("sh", ["-c", "df -k / | tail -1"]))
        return int(stdout.split()[1])

    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        plain = await runtime.create(boxlite.BoxOptions())
        assert (await plain.metrics()).disk_bytes is None, "no disk unless one is named"
        await plain.stop()

    monkeypatch.setenv("BOXLITE_DISK_SIZE_GB", "2")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        boxes = {2: await runtime.create(boxlite.BoxOptions()), 1: await runtime.create(boxlite.BoxOptions(disk_size_gb=1))}
        again = await runtime.create(boxlite.BoxOptions())
        for gib, box in boxes.items():
            assert 0.85 * gib * (1 << 20) < await disk_kib(box) <= gib * (1 << 20), gib
            assert (await box.metrics()).disk_bytes is not None
        # Each size is formatted once; boxes copy it.
        assert await disk_kib(again) == await disk_kib(boxes[2])
        assert sorted(path.name for path in (home / "disk-templates").iterdir()) == ["ext4-1g.img", "ext4-2g.img"]
        for box in (*boxes.values(), again):
            await box.stop()
        assert loop_devices_of(home) == []

    monkeypatch.setenv("BOXLITE_DISK_SIZE_GB", "lots")
    with pytest.raises(boxlite.ConfigError, match="BOXLITE_DISK_SIZE_GB"):
        boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
