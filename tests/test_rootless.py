"""A runtime that runs as an ordinary user: who its boxes are on the host, what it refuses and
why, and bad input that is the user's own to get wrong. The rest of the suite runs as such a user
too (CI runs it so); these tests are about what differs from root."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import boxlite

from .conftest import collect, logged
from .leftovers import own_cgroup

pytestmark = pytest.mark.ordinary_user_only("about a runtime that runs as an ordinary user (CI runs the suite as one too)")

# A directory an ordinary user can neither read nor write (Debian's root home is 0700).
FORBIDDEN = Path("/root")


async def test_box_root_is_the_user_and_holds_nothing_of_the_hosts(runtime: boxlite.Boxlite, home: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    stdout, _, status = await collect(await box.exec("sh", ["-c", "id -u; cat /proc/self/uid_map; echo made > /root/made"]))
    assert status.exit_code == 0
    assert stdout.split() == [b"0", b"0", b"0", b"1"], "box root is the only id, the runtime's user"
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


async def test_the_log_says_what_one_id_cannot_do(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="boxlite")
    with boxlite.Boxlite(boxlite.Options(home_dir=str(home))):
        await logged(caplog, "a box's processes cannot become another user (an exec as one fails) or give files to one (chown)")


async def test_a_user_the_box_lacks_is_a_clear_error(runtime: boxlite.Boxlite) -> None:
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
