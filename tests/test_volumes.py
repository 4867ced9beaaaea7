"""Host directories and files mounted into real boxes (BoxOptions.volumes)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import boxlite

from . import images
from .conftest import collect


HOST_USER = 1000  # a host user other than root, as the one a volume's directory belongs to


@pytest.mark.root_only("the volume holds host root's files, which an ordinary user cannot make")
async def test_a_writable_volume_gives_box_root_no_power_over_host_roots_files(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    shared = tmp_path / "roots"
    shared.mkdir()
    (shared / "owned-by-host-root").write_text("keep")
    box = await runtime.create(boxlite.BoxOptions(volumes=[(str(shared), "/mnt/roots")]))
    _, _, code = await sh(box, "echo changed > /mnt/roots/owned-by-host-root")
    assert code != 0
    _, _, code = await sh(box, "cp /bin/sh /mnt/roots/planted && chmod 4755 /mnt/roots/planted")
    assert code != 0 and not (shared / "planted").exists()
    assert (shared / "owned-by-host-root").read_text() == "keep"
    await box.stop()


async def sh(box: boxlite.Box, script: str) -> tuple[bytes, bytes, int]:
    stdout, stderr, status = await collect(await box.exec("sh", ["-c", script]))
    return stdout, stderr, status.exit_code


@pytest.mark.root_only("the volume belongs to another host user, which an ordinary user cannot arrange")
async def test_a_read_write_volume_reaches_the_host_and_the_next_box(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host").write_text("hello")
    # A host user's directory: in a user namespace, box root reads and writes there as that user.
    os.chown(shared, HOST_USER, HOST_USER)
    os.chown(shared / "from-host", HOST_USER, HOST_USER)
    options = boxlite.BoxOptions(volumes=[(str(shared), "/mnt/shared")])
    first = await runtime.create(options)
    assert await sh(first, "cat /mnt/shared/from-host && echo written > /mnt/shared/from-box") == (b"hello", b"", 0)
    await first.stop()
    assert (shared / "from-box").read_text() == "written\n"
    # As the directory's owner, never as host root: no box can plant a file of root's there.
    assert ((shared / "from-box").stat().st_uid, (shared / "from-box").stat().st_gid) == (HOST_USER, HOST_USER)
    second = await runtime.create(options)
    assert await sh(second, "cat /mnt/shared/from-box") == (b"written\n", b"", 0)
    await second.stop()


async def test_copies_in_refuse_a_volume_which_the_host_reaches_itself(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    """As BoxLite: a copy in is made with the runtime's powers, which in a volume could write
    host files box root may not; the volume's files are on the host already. A copy out reads
    what the box sees, its volumes too."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "kept").write_text("kept")
    box = await runtime.create(boxlite.BoxOptions(volumes=[(str(shared), "/mnt/shared")]))
    await box.start()
    with pytest.raises(boxlite.InvalidArgumentError, match="in a volume"):
        await box.copy_in(str(shared / "kept"), "/mnt/shared/copied")
    await box.copy_out("/mnt/shared/kept", str(tmp_path / "out"))
    assert (tmp_path / "out").read_text() == "kept"
    # A directory's contents onto the volume's mount point itself.
    contents = tmp_path / "contents"
    contents.mkdir()
    (contents / "planted").write_text("planted")
    with pytest.raises(boxlite.InvalidArgumentError, match="in a volume"):
        await box.copy_in(f"{contents}/.", "/mnt/shared")
    assert sorted(path.name for path in shared.iterdir()) == ["kept"]
    await box.stop()


async def test_a_read_only_volume_stays_read_only_even_against_remount(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "file").write_text("original")
    single = tmp_path / "single.txt"
    single.write_text("one file")
    box = await runtime.create(boxlite.BoxOptions(volumes=[(str(data), "/mnt/ro", True), {"host": str(single), "guest": "/etc/single.txt", "read_only": True}]))
    stdout, _, code = await sh(box, "grep ' /mnt/ro ' /proc/mounts")
    assert code == 0 and b" ro," in stdout
    _, _, code = await sh(box, "echo changed > /mnt/ro/file")
    assert code != 0
    _, _, code = await sh(box, "mount -o remount,rw /mnt/ro && echo changed > /mnt/ro/file")
    assert code != 0
    assert await sh(box, "cat /etc/single.txt") == (b"one file", b"", 0)
    assert (await sh(box, "echo x > /etc/single.txt"))[2] != 0
    assert (data / "file").read_text() == "original" and single.read_text() == "one file"
    await box.stop()


async def test_volume_targets_resolve_inside_the_box(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    # The image plants absolute symlinks where the volumes go: followed on the host, the first
    # would create a host directory, the second would cover the box's /proc/sys.
    host_target = Path(f"/tmp/boxlite-volume-escape-{os.getpid()}")
    staging = tmp_path / "rootfs"
    images.busybox_rootfs(staging)
    (staging / "mnt").mkdir()
    (staging / host_target.relative_to("/")).mkdir()  # exists in the box, not on the host
    (staging / "mnt" / "escape").symlink_to(host_target)
    (staging / "mnt" / "kernel").symlink_to("/proc/sys")
    layout = images.write_layout(tmp_path / "layout", [images.tar_directory(staging, images.BUSYBOX_OWNERS)], {"Env": ["PATH=/bin"]})
    source = tmp_path / "source"
    source.mkdir()
    (source / "mark").write_text("volume")
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=str(layout), volumes=[(str(source), "/mnt/escape/data")]))
    assert await sh(box, f"cat {host_target}/data/mark") == (b"volume", b"", 0)
    assert not host_target.exists()
    await box.stop()
    covering = await runtime.create(boxlite.BoxOptions(rootfs_path=str(layout), volumes=[(str(source), "/mnt/kernel")]))
    with pytest.raises(boxlite.EngineError, match="may not go"):
        await covering.start()
    assert await runtime.get_info(covering.id) is None  # removed on its failed start


async def test_bad_volumes_are_refused_before_anything_is_made(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    cases = [
        ([(str(tmp_path / "missing"), "/mnt/x")], boxlite.NotFoundError),
        ([("relative/path", "/mnt/x")], boxlite.InvalidArgumentError),
        ([(str(tmp_path), "relative")], boxlite.InvalidArgumentError),
        ([(str(tmp_path), "/proc/x")], boxlite.InvalidArgumentError),
        ([(str(tmp_path), "/")], boxlite.InvalidArgumentError),
        ([(str(tmp_path), "/a"), (str(tmp_path), "/a/")], boxlite.InvalidArgumentError),
    ]
    for volumes, error in cases:
        with pytest.raises(error):
            await runtime.create(boxlite.BoxOptions(volumes=volumes))
    assert await runtime.list_info() == []


LAYERS_ROOT = 0x7000_0000  # the host id box root's files are stored as in a named volume


@pytest.mark.root_only("each box has host ids of its own, which only root may hand out")
async def test_a_named_volume_outlives_its_boxes_and_is_shared_between_ranges(runtime: boxlite.Boxlite, home: Path) -> None:
    made = await runtime.volumes.create("cache")
    assert made.name == "cache" and made.created_at and Path(made.path).is_dir()
    options = boxlite.BoxOptions(volumes=[{"source": "volume://cache", "guest": "/cache"}])
    first = await runtime.create(options)
    assert await sh(first, "id -u && stat -c %u /cache && echo one > /cache/log") == (b"0\n0\n", b"", 0)
    await first.stop()
    # Another box, with another id range, sees the files as its own and adds to them.
    second = await runtime.create(boxlite.BoxOptions(volumes=[("volume://cache", "/data", False)]))
    assert await sh(second, "stat -c %u /data/log && echo two >> /data/log && cat /data/log") == (b"0\none\ntwo\n", b"", 0)
    log = Path(made.path) / "log"
    assert log.stat().st_uid == LAYERS_ROOT, "stored as box root's, in no box's own range"
    with pytest.raises(boxlite.InvalidStateError, match="used by box"):
        await runtime.volumes.remove("cache")
    assert [volume.name for volume in await runtime.volumes.list()] == ["cache"]
    assert (await runtime.volumes.get("cache")).path == made.path
    await second.stop()
    assert log.read_text() == "one\ntwo\n"
    await runtime.volumes.remove("cache")
    assert await runtime.volumes.list() == [] and not Path(made.path).exists()


async def test_named_volumes_refuse_bad_names_and_unknown_ones_make_nothing(runtime: boxlite.Boxlite) -> None:
    for bad in ("", "../etc", "a/b", ".hidden", "x" * 65):
        with pytest.raises(boxlite.InvalidArgumentError, match="volume name"):
            await runtime.volumes.create(bad)
    with pytest.raises(boxlite.InvalidArgumentError, match="volume name"):
        await runtime.create(boxlite.BoxOptions(volumes=[("volume://a/b", "/x")]))
    with pytest.raises(boxlite.NotFoundError, match="volume missing does not exist"):
        await runtime.create(boxlite.BoxOptions(volumes=[("volume://missing", "/x")]))
    assert await runtime.list_info() == []
    await runtime.volumes.create("once")
    with pytest.raises(boxlite.AlreadyExistsError):
        await runtime.volumes.create("once")
    with pytest.raises(boxlite.UnsupportedError, match="size"):
        await runtime.volumes.create("sized", size_gb=1)
    with pytest.raises(boxlite.NotFoundError):
        await runtime.volumes.get("never")
    with pytest.raises(boxlite.NotFoundError):
        await runtime.volumes.remove("never")


@pytest.mark.root_only("each box has host ids of its own, which only root may hand out")
async def test_a_writable_volume_of_another_boxs_ids_is_not_taken_as_its_owner(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    os.chown(foreign, LAYERS_ROOT + 7 * 65536, LAYERS_ROOT + 7 * 65536)  # a box range's root
    box = await runtime.create(boxlite.BoxOptions(volumes=[(str(foreign), "/mnt/foreign")]))
    _, _, code = await sh(box, "echo x > /mnt/foreign/planted")
    assert code != 0 and not (foreign / "planted").exists(), "a box must not act as another box's root"
    await box.stop()



async def test_a_volume_removed_while_a_box_naming_it_is_made_goes_or_the_box_comes(runtime: boxlite.Boxlite) -> None:
    """Never both: a box made meanwhile either finds the volume gone or keeps it."""
    for _ in range(10):
        await runtime.volumes.create("v")
        removed, made = await asyncio.gather(
            runtime.volumes.remove("v"), runtime.create(boxlite.BoxOptions(auto_remove=False, volumes=[("volume://v", "/v")])), return_exceptions=True
        )
        if isinstance(made, boxlite.Box):
            assert isinstance(removed, boxlite.InvalidStateError), removed
            assert await sh(made, "ls -d /v") == (b"/v\n", b"", 0)
            await runtime.remove(made.id, force=True)
            await runtime.volumes.remove("v")
        else:
            assert removed is None and isinstance(made, boxlite.NotFoundError), made
    assert await runtime.list_info() == [] and await runtime.volumes.list() == []