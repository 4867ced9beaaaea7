"""A runtime that runs as an ordinary user: who its boxes are on the host, what it refuses and
why, and bad input that is the user's own to get wrong. The rest of the suite runs as such a user
too (CI runs it so); these tests are about what differs from root."""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
import tarfile
from pathlib import Path

import pytest

import boxlite

from . import images
from .conftest import checked_runtime, collect, logged, subordinate_ids, wait_until
from .leftovers import own_cgroup

pytestmark = pytest.mark.ordinary_user_only("about a runtime that runs as an ordinary user (CI runs the suite as one too)")

# A directory an ordinary user can neither read nor write (Debian's root home is 0700).
FORBIDDEN = Path("/root")


async def test_box_root_is_the_user_and_holds_nothing_of_the_hosts(runtime: boxlite.Boxlite, home: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    stdout, _, status = await collect(await box.exec("sh", ["-c", "id -u; cat /proc/self/uid_map; echo made > /root/made"]))
    assert status.exit_code == 0
    assert stdout.split()[:4] == [b"0", b"0", b"0", b"1"], "box root is the runtime's user"
    made = home / "boxes" / box.id / "upper" / "root" / "made"
    assert (made.stat().st_uid, made.stat().st_gid) == (os.getuid(), os.getgid())
    sleeper = await box.exec("sleep", ["30"])
    init = (await box.info()).state.pid
    children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    uids = {next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")).split()[1] for pid in [init, *children]}
    assert uids == {str(os.getuid())}
    sleeper.close()
    # Root of the box holds no power over its hostname, mounts or network.
    for argv in (["hostname", "elsewhere"], ["mount", "-t", "tmpfs", "x", "/mnt"], ["ip", "link", "set", "lo", "down"]):
        _, _, status = await collect(await box.exec(argv[0], argv[1:]))
        assert status.exit_code != 0, argv
    await box.stop()
    await runtime.remove(box.id)


async def test_boxes_are_nested_in_one_user_namespace_of_the_runtimes(runtime: boxlite.Boxlite) -> None:
    """The runtime's shim spawner makes one user namespace in which the user is root, and every
    box's shim is spawned into it, as a root runtime's are in the host's: no setuid id mapper
    runs for each box."""
    ns_get_parent = 0xB702  # _IO(0xb7, 0x2), linux/nsfs.h
    parents = set()
    for _ in range(2):
        box = await runtime.create(boxlite.BoxOptions())
        sleeper = await box.exec("sleep", ["30"])
        init = (await box.info()).state.pid
        child = Path(f"/proc/{init}/task/{init}/children").read_text().split()[0]
        own = os.open(f"/proc/{child}/ns/user", os.O_RDONLY)
        parent = fcntl.ioctl(own, ns_get_parent)
        parents.add(os.fstat(parent).st_ino)
        os.close(parent)
        os.close(own)
        sleeper.close()
        await box.stop()
    assert len(parents) == 1, "both boxes' namespaces are nested in the same one"
    assert parents != {os.stat("/proc/self/ns/user").st_ino}, "which is not the host's"


async def test_the_log_says_what_one_id_cannot_do(home: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "0")
    caplog.set_level(logging.INFO, logger="boxlite")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))):
        await logged(caplog, "a box's processes cannot become another user (an exec as one fails) or give files to one (chown)")


async def test_with_subordinate_ids_a_layer_keeps_its_owners_and_set_id_bits(home: Path, busybox_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first_uid, first_gid, _ = subordinate_ids()
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "1")
    base = Path(busybox_image) / "blobs" / "sha256"
    index = json.loads((Path(busybox_image) / "index.json").read_text())
    manifest = json.loads((base / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    busybox_layer = gzip.decompress((base / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes())
    tool = tarfile.TarInfo("opt/tool")
    tool.size, tool.mode, tool.uid, tool.gid = 4, 0o4750, 1000, 1001
    link = tarfile.TarInfo("opt/link")
    link.type, link.linkname, link.uid, link.gid = tarfile.SYMTYPE, "tool", 1002, 1002
    layout = images.write_layout(tmp_path / "owned", [busybox_layer, images.tar_of([(tool, b"#!/\n"), (link, None)])], {"Env": ["PATH=/bin"]}, compress=False)
    async with checked_runtime(home) as runtime:
        box = await runtime.create(boxlite.BoxOptions(rootfs_path=str(layout)))
        stdout, _, _ = await collect(await box.exec("stat", ["-c", "%u:%g %a", "/opt/tool"]))
        assert stdout == b"1000:1001 4750\n", "the owner, and the set-id bit a change of owner clears, as the image says"
        stdout, _, _ = await collect(await box.exec("stat", ["-c", "%u:%g", "/opt/link"]))
        assert stdout == b"1002:1002\n"
        await box.stop()
    stored = next((home / "layers").glob("subordinate-*/*/opt/tool"))
    assert (stored.stat().st_uid, stored.stat().st_gid) == (first_uid + 999, first_gid + 1000)


async def trash_emptied(home: Path) -> None:
    """Waits until the home's trash is empty: what removed boxes' other users own is deleted by
    the runtime's helper in a namespace with those ids, in the background."""
    await wait_until(lambda: not any((home / "trash").iterdir()), what="the removed boxes' files were never deleted from the trash")


async def test_with_subordinate_ids_a_box_has_other_users(home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    first_uid, first_gid, count = subordinate_ids()
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "1")
    caplog.set_level(logging.INFO, logger="boxlite")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        await logged(caplog, f"an ordinary user's boxes have {count + 1} ids: box root is this user")
        box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
        script = "cat /proc/self/uid_map; mkdir -p /opt/private && echo kept > /opt/private/file && chown -R 1000:1001 /opt/private && chmod 700 /opt/private"
        stdout, stderr, status = await collect(await box.exec("sh", ["-c", script]))
        assert status.exit_code == 0, stderr
        assert stdout.split() == [b"0", b"0", b"1", b"1", b"1", str(count).encode()], "box root is the user; box ids from 1 are its subordinate ones"
        stdout, stderr, status = await collect(await box.exec("sh", ["-c", "id -u; cat /opt/private/file"], user="1000"))
        assert (status.exit_code, stdout) == (0, b"1000\nkept\n"), stderr
        stdout, _, _ = await collect(await box.exec("id", ["-u"], user="nobody"))
        assert stdout == b"65534\n"
        private = home / "boxes" / box.id / "upper" / "opt" / "private"
        assert (private.stat().st_uid, private.stat().st_gid) == (first_uid + 999, first_gid + 1000), "box ids n ≥ 1 are subordinate ids n - 1"
        # Files only another box user may read are copied by the runtime's helper, in a namespace
        # with the box's ids: out as this user's, in as box root's.
        copied = home.parent / "copied"
        await box.copy_out("/opt/private", str(copied))
        assert (copied / "file").read_text() == "kept" + "\n" and copied.stat().st_uid == os.getuid()
        await box.copy_in(str(copied / "file"), "/opt/private/back")
        stdout, _, _ = await collect(await box.exec("stat", ["-c", "%u", "/opt/private/back"]))
        assert stdout == b"0\n"
        await box.stop()
        await runtime.remove(box.id)
        await trash_emptied(home)


async def test_a_runtime_that_does_not_map_a_boxs_subordinate_ids_removes_it_with_them(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its record says which ids own its files; a runtime without them (here: told to give
    boxes one id) removes them with a helper that maps them, as long as the user has them."""
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "1")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="ranged")
        # A directory only box user 1000 may enter: out of the user's own reach on the host.
        shut = "mkdir -p /srv/theirs && touch /srv/theirs/file && chown -R 1000 /srv/theirs && chmod 700 /srv/theirs"
        _, stderr, status = await collect(await box.exec("sh", ["-c", shut]))
        assert status.exit_code == 0, stderr
        await box.stop()
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "0")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        await runtime.remove("ranged")
        assert await runtime.list_info() == []
        await trash_emptied(home)


async def test_a_box_with_subordinate_ids_starts_only_where_they_are_mapped(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first_uid, first_gid, count = subordinate_ids()
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "1")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        box = await runtime.create(boxlite.BoxOptions(auto_remove=False), name="ranged")
        _, stderr, status = await collect(await box.exec("sh", ["-c", "touch /root/theirs && chown 1000 /root/theirs"]))
        assert status.exit_code == 0, stderr
        await box.stop()
    # The record says which subordinate ids own the box's files; a runtime that maps others (an
    # administrator gave this user new ranges) refuses to start it rather than show them as nobody's.
    record_path = home / "boxes" / box.id / "box.json"
    record = json.loads(record_path.read_text())
    assert record["subordinate_ids"] == {"uid": first_uid, "gid": first_gid, "count": count}
    record_path.write_text(json.dumps({**record, "subordinate_ids": {"uid": first_uid + count, "gid": first_gid + count, "count": count}}))
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        box = await runtime.get("ranged")
        assert box is not None
        with pytest.raises(boxlite.InvalidStateError, match=f"was made with the subordinate uids from {first_uid + count} and gids from {first_gid + count} .*this runtime maps {count} of each from uid {first_uid} and gid {first_gid}"):
            await box.start()
        assert (await box.info()).state.status == "stopped"
    record_path.write_text(json.dumps(record))
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "0")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        box = await runtime.get("ranged")
        assert box is not None
        with pytest.raises(boxlite.InvalidStateError, match="has 65536 ids, which needs the subordinate ids it was made with, and this runtime maps 1 .*unless BOXLITE_SUBORDINATE_IDS=0"):
            await box.start()
        assert (await box.info()).state.status == "stopped"
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "1")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        box = await runtime.get("ranged")
        assert box is not None
        stdout, _, _ = await collect(await box.exec("stat", ["-c", "%u", "/root/theirs"]))
        assert stdout == b"1000\n"
        await box.stop()
        await runtime.remove(box.id)
        await trash_emptied(home)


async def test_with_one_id_another_user_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "0")
    async with checked_runtime(home) as runtime:
        box = await runtime.create(boxlite.BoxOptions())
        with pytest.raises(boxlite.ExecutionError, match=r"\"nobody\" \(uid 65534, gid 65534\) does not exist in this box"):
            await (await box.exec("id", user="nobody")).wait()
        stdout, _, _ = await collect(await box.exec("id", ["-u"]))
        assert stdout == b"0\n", "the box carries on"
        await box.stop()


async def test_limits_without_a_delegated_cgroup_are_refused_saying_how_to_grant_them(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOXLITE_CGROUP_PARENT", raising=False)
    own = [Path("/sys/fs/cgroup") / name / own_cgroup(name).lstrip("/") for name in ("memory", "cpu", "pids")]
    if any(os.access(path, os.W_OK) for path in own):
        pytest.skip(f"this user may manage its own cgroups here ({own}): limits are not refused")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        with pytest.raises(boxlite.UnsupportedError, match="memory_mib limits need cgroups.*BOXLITE_CGROUP_PARENT"):
            await runtime.create(boxlite.BoxOptions(memory_mib=64))
        assert await runtime.list_info() == []
        # Without limits of its own, a box runs.
        box = await runtime.create(boxlite.BoxOptions())
        stdout, _, _ = await collect(await box.exec("echo", ["runs"]))
        assert stdout == b"runs\n"
        await box.stop()


async def test_a_disk_of_its_own_is_refused(runtime: boxlite.Boxlite, home: Path) -> None:
    with pytest.raises(boxlite.UnsupportedError, match="disk_size_gb"):
        await runtime.create(boxlite.BoxOptions(disk_size_gb=1))
    assert list((home / "boxes").iterdir()) == []


async def test_a_disk_size_for_every_box_is_ignored_saying_why(home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("BOXLITE_DISK_SIZE_GB", "2")
    caplog.set_level(logging.WARNING, logger="boxlite")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))) as runtime:
        await logged(caplog, "BOXLITE_DISK_SIZE_GB is ignored: a box's disk is attached to a loop device, which only root may attach")
        box = await runtime.create(boxlite.BoxOptions())
        stdout, _, _ = await collect(await box.exec("echo", ["runs"]))
        assert stdout == b"runs\n" and (await box.metrics()).disk_bytes is None
        await box.stop()


def test_a_home_the_user_cannot_write_is_an_error_naming_it() -> None:
    with pytest.raises(boxlite.BoxliteError, match=str(FORBIDDEN / "boxlite-home")):
        boxlite.Boxlite(boxlite.Options(home_dir=str(FORBIDDEN / "boxlite-home")))


async def test_a_layout_or_volume_the_user_cannot_read_is_an_error_naming_it(runtime: boxlite.Boxlite, home: Path) -> None:
    with pytest.raises(boxlite.BoxliteError, match=str(FORBIDDEN / "layout")):
        await runtime.create(boxlite.BoxOptions(rootfs_path=str(FORBIDDEN / "layout")))
    with pytest.raises(boxlite.InvalidArgumentError, match=f"volume source {FORBIDDEN} cannot be read"):
        await runtime.create(boxlite.BoxOptions(volumes=[(str(FORBIDDEN), "/mnt/forbidden")]))
    assert list((home / "boxes").iterdir()) == []
