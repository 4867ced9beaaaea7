"""Snapshots of a box: its files taken whole (owners, modes, times, links, what it deleted from
its image), listed, restored exactly into a stopped box, taken frozen from a running one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import boxlite

from .conftest import checked_runtime, collect
from .leftovers import box_processes

# Files of every kind the box's writable layer holds: content, a hard link, a symbolic link, a
# set-uid mode, an old mtime, a file deleted from the image (a whiteout) and a directory of
# the image emptied and made again (an opaque directory).
MAKE = """
set -e
mkdir -p /root/tree/inner
printf 'first version' > /root/tree/file
ln /root/tree/file /root/tree/hardlink
ln -s ../tree/file /root/tree/inner/symlink
printf 'secret' > /root/tree/setuid && chmod 4750 /root/tree/setuid
touch -d '2001-02-03 04:05:06' /root/tree/old
rm /bin/yes
rm -rf /etc/network && mkdir /etc/network && echo fresh > /etc/network/only
"""

# What the box sees of those files.
SEE = """
cd /root/tree
for entry in file hardlink inner/symlink setuid old; do stat -c '%n %f %a %u %g %h %s' "$entry"; done
stat -c '%Y' old
readlink inner/symlink
cat file hardlink setuid; echo
ls /bin/yes 2>&1 || true
ls /etc/network
ls /root
"""

CHANGE = """
printf 'second version' > /root/tree/file
rm -rf /root/tree/inner
echo new > /root/added
rm /bin/true
"""


async def see(box: boxlite.Box) -> bytes:
    stdout, stderr, status = await collect(await box.exec("sh", ["-c", SEE]))
    assert status.exit_code == 0, stderr
    return stdout


async def test_a_snapshot_brings_a_stopped_boxs_files_back_exactly(runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False), name="snapped")
    stdout, stderr, status = await collect(await box.exec("sh", ["-c", MAKE]))
    assert status.exit_code == 0, (stdout, stderr)
    before = await see(box)
    assert b"No such file" in before and b"only" in before
    await box.stop()
    box = await runtime.get("snapped")
    assert box is not None

    taken_at = time.time()
    first = await box.snapshot.create(name="before")
    assert (first.name, first.box_id) == ("before", box.id)
    assert abs(first.created_at - taken_at) < 60 and first.size_bytes > 0 and first.container_disk_bytes >= len("first version")
    assert repr(first) == f"SnapshotInfo(name='before', box_id='{box.id}', created_at={first.created_at})"

    stdout, stderr, status = await collect(await box.exec("sh", ["-c", CHANGE]))
    assert status.exit_code == 0, stderr
    assert await see(box) != before
    with pytest.raises(boxlite.InvalidStateError, match="stop the box first"):
        await box.snapshot.restore("before")
    await box.stop()
    box = await runtime.get("snapped")
    assert box is not None
    second = await box.snapshot.create(name="after")
    assert [info.name for info in await box.snapshot.list()] == ["after", "before"], "newest first"

    await box.snapshot.restore("before")
    assert await see(box) == before
    stdout, _, _ = await collect(await box.exec("ls", ["/root/added", "/bin/true"]))
    assert stdout == b"/bin/true\n", "what came after the snapshot is gone, what the image had is back"
    # Restoring keeps the later snapshot, which brings the later files back.
    await box.stop()
    box = await runtime.get("snapped")
    assert box is not None
    kept = await box.snapshot.get("after")
    assert kept is not None and (kept.id, kept.created_at) == (second.id, second.created_at)
    await box.snapshot.restore("after")
    stdout, _, _ = await collect(await box.exec("cat", ["/root/added", "/root/tree/file"]))
    assert stdout == b"new\nsecond version"

    await box.snapshot.remove("before")
    assert await box.snapshot.get("before") is None
    assert [info.name for info in await box.snapshot.list()] == ["after"]
    await box.stop()
    await runtime.remove(box.id)


async def test_snapshot_names_and_states_are_checked(runtime: boxlite.Boxlite, home: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    for bad in ("", ".hidden", "a/b", "x" * 256):
        with pytest.raises(boxlite.InvalidArgumentError, match="invalid snapshot name"):
            await box.snapshot.create(name=bad)
    await box.snapshot.create(name="one")
    with pytest.raises(boxlite.AlreadyExistsError, match="'one' already exists"):
        await box.snapshot.create(name="one")
    with pytest.raises(boxlite.NotFoundError, match="'two' not found"):
        await box.snapshot.remove("two")
    with pytest.raises(boxlite.NotFoundError, match="'two' not found"):
        await box.snapshot.restore("two")
    assert await box.snapshot.get("two") is None
    snapshots = home / "boxes" / box.id / "snapshots"
    assert [path.name.startswith(".") for path in snapshots.iterdir()] == [False], "nothing half-made is left"
    # Snapshots go with their box.
    await runtime.remove(box.id, force=True)
    assert not snapshots.exists()
    with pytest.raises(boxlite.NotFoundError):
        await box.snapshot.list()


async def test_a_snapshot_nobody_receives_is_removed(runtime: boxlite.Boxlite, home: Path) -> None:
    """A snapshot taken for a caller who cancelled is removed, as a box made for nobody is."""
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="big")
    await collect(await box.exec("sh", ["-c", "head -c 50000000 /dev/zero > /root/big"]))
    await box.stop()
    stopped = await runtime.get("big")
    assert stopped is not None
    taking = asyncio.ensure_future(stopped.snapshot.create(name="s"))
    await asyncio.sleep(0)
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    # The copy runs to its end in the background (its directory comes and goes).
    snapshots = home / "boxes" / box.id / "snapshots"
    began = False
    for _ in range(4000):
        entries = os.listdir(snapshots) if snapshots.exists() else []
        began = began or bool(entries)
        if began and not entries:
            break
        await asyncio.sleep(0.005)
    assert began, "the snapshot was never taken"
    assert os.listdir(snapshots) == [] and await stopped.snapshot.list() == []
    await stopped.snapshot.create(name="s")
    await runtime.remove(box.id)


WRITER = "i=0; while true; do i=$((i+1)); echo line-$i-end >> /root/log; done"
# Return once the writer has written, and once it writes on (bounded by the test's timeout).
HAS_WRITTEN = "until [ -s /root/log ]; do :; done; echo written"
WRITES_ON = "n=$(wc -l < /root/log); until [ $(wc -l < /root/log) -gt $n ]; do :; done; echo grew"


@pytest.mark.parametrize("disk", [None, pytest.param(1, marks=pytest.mark.root_only("a disk of a box's own is a loop device"))], ids=["tree", "disk"])
async def test_a_running_box_is_snapshotted_frozen_and_goes_on(runtime: boxlite.Boxlite, disk: int | None) -> None:
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False, disk_size_gb=disk), name="busy")
    await box.start()
    writer = await box.exec("sh", ["-c", WRITER])
    assert (await collect(await box.exec("sh", ["-c", HAS_WRITTEN])))[0] == b"written\n"
    await box.snapshot.create(name="busy")
    # The box goes on: the writer still writes.
    assert (await collect(await box.exec("sh", ["-c", WRITES_ON])))[0] == b"grew\n"
    writer.close()
    await box.stop()
    box = await runtime.get("busy")
    assert box is not None
    await box.snapshot.restore("busy")
    # What the snapshot holds is whole: every line the writer finished, and at most one it had
    # begun (the copy saw the file between two of its writes).
    stdout, _, _ = await collect(await box.exec("cat", ["/root/log"]))
    taken = stdout.decode().splitlines()
    assert taken and all(line == f"line-{number}-end" for number, line in enumerate(taken[:-1], start=1))
    assert f"line-{len(taken)}-end".startswith(taken[-1])
    await box.stop()
    await runtime.remove(box.id)


#: A cgroup parent delegated to the ordinary user in every hierarchy but the freezer's
#: (scripts/rootless-tests.sh makes one).
WITHOUT_FREEZER_VARIABLE = "BOXLITE_TEST_CGROUP_PARENT_WITHOUT_FREEZER"


@pytest.mark.ordinary_user_only("about a host that gives a running box no freezer, which root's runtime always has here")
async def test_a_running_box_without_a_freezer_is_refused_and_a_stopped_one_taken(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.environ.get(WITHOUT_FREEZER_VARIABLE)
    if parent is None:
        pytest.skip(f"needs {WITHOUT_FREEZER_VARIABLE}: a cgroup parent of this user's in every hierarchy but the freezer's")
    monkeypatch.setenv("BOXLITE_CGROUP_PARENT", parent)
    async with checked_runtime(home) as runtime:
        box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="unfrozen")
        await box.start()
        with pytest.raises(boxlite.InvalidStateError, match="stop the box first"):
            await box.snapshot.create(name="now")
        await box.stop()
        box = await runtime.get("unfrozen")
        assert box is not None
        assert (await box.snapshot.create(name="now")).name == "now"
        assert (home / "boxes" / box.id / "snapshots").is_dir()
        await runtime.remove(box.id)


@pytest.fixture
def btrfs_home(tmp_path: Path) -> Iterator[Path]:
    """A home on a btrfs filesystem of its own (a loop-mounted image), which has reflinks."""
    image, mount = tmp_path / "btrfs.img", tmp_path / "btrfs"
    with image.open("wb") as file:
        file.truncate(2 << 30)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount / "home"
    finally:
        for pid in box_processes(mount / "home"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.root_only("the btrfs home is a loop device the test mounts")
async def test_on_a_filesystem_with_reflinks_a_snapshot_and_a_clone_take_no_room(btrfs_home: Path) -> None:
    def free() -> int:
        status = os.statvfs(btrfs_home)
        return status.f_bavail * status.f_frsize

    with boxlite.Boxlite(boxlite.Options(home_dir=str(btrfs_home))) as runtime:
        box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
        await (await box.exec("sh", ["-c", "head -c 268435456 /dev/urandom > /root/big; sync"])).wait()
        await box.stop()
        box = await runtime.get(box.id)
        assert box is not None
        os.sync()
        before = free()
        await box.snapshot.create(name="shared")
        clone = await box.clone_box()
        os.sync()
        assert before - free() < 32 << 20, "the 256 MiB are shared, not copied"
        stdout, _, _ = await collect(await clone.exec("sh", ["-c", "head -c 4 /root/big | od -An -tx1; wc -c < /root/big"]))
        original, _, _ = await collect(await box.exec("sh", ["-c", "head -c 4 /root/big | od -An -tx1; wc -c < /root/big"]))
        assert stdout == original and stdout.split()[-1] == b"268435456"
        await clone.stop()
        await box.stop()
