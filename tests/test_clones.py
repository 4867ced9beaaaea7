"""Clones: a new, stopped box with another's options and files (owners as the box sees them,
moved into the clone's own ids), independent of its source from then on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import boxlite

from .conftest import collect
from .test_snapshots import HAS_WRITTEN, MAKE, WRITER, WRITES_ON, see

ROOT = os.geteuid() == 0
# Box root may give files to another user only where a box has a range of ids (root's runtime).
GIVE_AWAY = "chown 1000:1000 /root/tree/old" if ROOT else "true"


async def stopped_source(runtime: boxlite.Boxlite, options: boxlite.BoxOptions) -> tuple[boxlite.Box, bytes]:
    """A stopped box named "source" holding the snapshot tests' files (one given to uid 1000
    where boxes have ids of their own), and what it sees of them."""
    source = await runtime.create(options, name="source")
    stdout, stderr, status = await collect(await source.exec("sh", ["-c", MAKE + GIVE_AWAY]))
    assert status.exit_code == 0, (stdout, stderr)
    files = await see(source)
    await source.stop()
    stopped = await runtime.get("source")
    assert stopped is not None
    return stopped, files


async def test_a_clone_has_its_sources_files_and_options_and_goes_its_own_way(runtime: boxlite.Boxlite, busybox_image: str, home: Path) -> None:
    options = boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False, env=[("FLAVOUR", "plain")])
    source, files = await stopped_source(runtime, options)
    await source.snapshot.create(name="kept-here")

    clone = await source.clone_box(name="copy")
    assert clone.id != source.id and clone.name == "copy"
    assert (await clone.info()).state.status == "stopped"
    assert await see(clone) == files
    stdout, _, _ = await collect(await clone.exec("sh", ["-c", "echo $FLAVOUR"]))
    assert stdout == b"plain\n", "the clone has its source's options"
    assert await clone.snapshot.list() == [], "snapshots stay with their box"
    if ROOT:
        # The same owners as the boxes see them, each box's own host ids.
        source_file = home / "boxes" / source.id / "upper" / "root" / "tree" / "old"
        clone_file = home / "boxes" / clone.id / "upper" / "root" / "tree" / "old"
        assert clone_file.stat().st_uid != source_file.stat().st_uid
        assert clone_file.stat().st_uid - clone_file.parent.stat().st_uid == 1000

    # Independent: what one does the other does not see, and either may go first.
    await collect(await clone.exec("sh", ["-c", "echo changed > /root/tree/file"]))
    assert await see(source) == files
    with pytest.raises(boxlite.InvalidArgumentError, match="'copy' already exists"):
        await source.clone_box(name="copy")
    await source.stop()
    await runtime.remove(source.id)
    stdout, _, _ = await collect(await clone.exec("cat", ["/root/tree/file"]))
    assert stdout == b"changed\n"
    await clone.stop()
    await runtime.remove(clone.id)
    assert await runtime.list_info() == []


async def test_a_running_box_is_cloned_frozen_and_goes_on(runtime: boxlite.Boxlite) -> None:
    source = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    writer = await source.exec("sh", ["-c", WRITER])
    assert (await collect(await source.exec("sh", ["-c", HAS_WRITTEN])))[0] == b"written\n"
    clone = await source.clone_box()
    assert (await collect(await source.exec("sh", ["-c", WRITES_ON])))[0] == b"grew\n", "the source goes on"
    writer.close()
    stdout, _, _ = await collect(await clone.exec("cat", ["/root/log"]))
    lines = stdout.decode().splitlines()
    assert lines and all(line == f"line-{number}-end" for number, line in enumerate(lines[:-1], start=1))
    await clone.stop()
    await source.stop()


@pytest.mark.root_only("a disk of a box's own is a loop device")
async def test_a_box_with_a_disk_is_cloned_with_its_owners(runtime: boxlite.Boxlite, busybox_image: str, home: Path) -> None:
    """A disk is copied as it is; the clone's first boot moves its files into the clone's own
    ids (setuid bits kept), so both boxes see the same owners and neither sees the other's."""
    source, files = await stopped_source(runtime, boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False, disk_size_gb=1))

    clone = await source.clone_box(name="copy")
    assert (home / "boxes" / clone.id / "disk.img").exists()
    assert await see(clone) == files, "the clone sees its source's files, owners and modes"
    stdout, _, _ = await collect(await clone.exec("sh", ["-c", "stat -c '%u:%g %a' /root/tree/old /root/tree/setuid; touch /root/new; stat -c %u /root/new"]))
    assert stdout == b"1000:1000 644\n0:0 4750\n0\n"
    await collect(await clone.exec("sh", ["-c", "echo changed > /root/tree/file"]))
    assert await see(source) == files, "independent of its source"
    await clone.stop()
    clone = await runtime.get("copy")
    assert clone is not None
    assert await see(clone) != files, "its own files survive its restart"
    for box in (source, clone):
        await runtime.remove(box.id, force=True)
    assert await runtime.list_info() == []
