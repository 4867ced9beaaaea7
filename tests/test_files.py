"""copy_in / copy_out with docker cp conventions, on real boxes, including symlinks planted in
the box that try to reach host files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import boxlite

from .conftest import collect


@pytest.fixture
async def box(any_runtime: boxlite.Boxlite) -> boxlite.Box:
    return await any_runtime.create(boxlite.BoxOptions())


async def sh(box: boxlite.Box, script: str) -> str:
    stdout, stderr, status = await collect(await box.exec("sh", ["-c", script]))
    assert status.exit_code == 0, stderr
    return stdout.decode()


def tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)))
    os.chmod(root / "a.txt", 0o640)
    (root / "link").symlink_to("a.txt")


async def test_files_and_directories_follow_docker_cp_rules(box: boxlite.Box, tmp_path: Path) -> None:
    source = tmp_path / "src"
    tree(source)
    await box.copy_in(str(source / "a.txt"), "/root/renamed.txt")
    await box.copy_in(str(source / "a.txt"), "/tmp/")
    await box.copy_in(str(source), "/opt")  # /opt does not exist: becomes /opt
    await box.copy_in(str(source), "/tmp")  # /tmp exists: lands in /tmp/src
    await sh(box, "mkdir /contents")
    await box.copy_in(str(source) + "/.", "/contents")
    listing = await sh(box, "cat /root/renamed.txt /tmp/a.txt; echo; ls /opt /tmp/src /contents; stat -c %a /opt/a.txt; readlink /opt/link; od -An -tx1 /opt/sub/b.bin | head -1")
    lines = listing.split()
    assert lines[0] == "alphaalpha"
    assert listing.count("a.txt") >= 3 and "640" in lines and "a.txt" in lines
    assert "00 01 02 03" in listing


async def test_copy_out_round_trips_bytes_modes_and_links(box: boxlite.Box, tmp_path: Path) -> None:
    source = tmp_path / "src"
    tree(source)
    await box.copy_in(str(source), "/data")
    out = tmp_path / "out"
    await box.copy_out("/data", str(out))
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert (out / "a.txt").stat().st_mode & 0o777 == 0o640
    assert os.readlink(out / "link") == "a.txt"
    single = tmp_path / "single.txt"
    await box.copy_out("/data/sub/b.bin", str(single))
    assert single.read_bytes() == bytes(range(256))
    existing = tmp_path / "into"
    existing.mkdir()
    await box.copy_out("/etc/hosts", str(existing))
    assert (existing / "hosts").read_text().startswith("127.0.0.1")


async def test_symlinks_in_the_box_never_lead_to_host_files(box: boxlite.Box, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("host secret")
    await sh(box, f"ln -s {victim} /root/evil; ln -s {tmp_path} /root/evildir; ln -s ../../../../../{tmp_path} /root/relative")
    # Writing through the planted links resolves them inside the box: first they dangle...
    payload = tmp_path / "payload.txt"
    payload.write_text("from host")
    with pytest.raises(boxlite.NotFoundError):
        await box.copy_in(str(payload), "/root/evildir/")
    # ...then, once the box has such a directory, the files land in the box's directory.
    await sh(box, f"mkdir -p {tmp_path}")
    await box.copy_in(str(payload), "/root/evildir/")
    await box.copy_in(str(payload), "/root/relative/dropped.txt")
    assert (await sh(box, f"ls {tmp_path}")).split() == ["dropped.txt", "payload.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["home", "payload.txt", "victim.txt"]
    assert victim.read_text() == "host secret"
    # Reading through them reads the box's view, not the host's file.
    with pytest.raises(boxlite.NotFoundError):
        await box.copy_out("/root/evil", str(tmp_path / "stolen"), boxlite.CopyOptions(follow_symlinks=True))
    await box.copy_out("/root/evil", str(tmp_path / "link-only"))
    assert os.readlink(tmp_path / "link-only") == str(victim)


async def test_bad_copies_are_typed_errors(box: boxlite.Box, tmp_path: Path) -> None:
    source = tmp_path / "dir"
    source.mkdir()
    with pytest.raises(boxlite.NotFoundError):
        await box.copy_in(str(tmp_path / "missing"), "/root/x")
    with pytest.raises(boxlite.NotFoundError):
        await box.copy_in(str(source), "/no/such/parent/x")
    with pytest.raises(boxlite.ConfigError):
        await box.copy_in(str(source), "/root/x", boxlite.CopyOptions(recursive=False))
    with pytest.raises(boxlite.ConfigError, match="path in the box must not be empty"):
        await box.copy_in(str(source), "")
    with pytest.raises(boxlite.ConfigError, match="path on the host must not be empty"):
        await box.copy_in("", "/root/x")
    with pytest.raises(boxlite.ConfigError, match="path on the host must not be empty"):
        await box.copy_out("/etc", "")
    with pytest.raises(boxlite.InvalidArgumentError):
        await box.copy_in(str(source), "/proc/1/")
    file = tmp_path / "f"
    file.write_text("1")
    await box.copy_in(str(file), "/root/f")
    with pytest.raises(boxlite.AlreadyExistsError):
        await box.copy_in(str(file), "/root/f", boxlite.CopyOptions(overwrite=False))
    with pytest.raises(boxlite.NotFoundError):
        await box.copy_out("/root/missing", str(tmp_path / "m"))
    # A directory onto a file, either way, is refused (as docker cp), and the file is kept.
    with pytest.raises(boxlite.InvalidArgumentError, match="a file in the box") as refused:
        await box.copy_in(str(source), "/root/f")
    assert "serve-scratch" not in str(refused.value), "a server's staging is not the caller's business"
    assert await sh(box, "cat /root/f") == "1"
    with pytest.raises(boxlite.NotFoundError, match="does not exist on the host"):
        await box.copy_out("/root/f", str(tmp_path / "no" / "such" / "f"))
    await sh(box, "mkdir -p /root/d")
    with pytest.raises(boxlite.InvalidArgumentError, match="a file on the host"):
        await box.copy_out("/root/d", str(file))
    assert file.read_text() == "1"


async def test_a_large_file_streams_through(box: boxlite.Box, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as handle:
        handle.truncate(256 << 20)
        handle.seek(100 << 20)
        handle.write(b"marker")
    await box.copy_in(str(big), "/root/big")
    assert (await sh(box, "wc -c < /root/big")).strip() == str(256 << 20)
    back = tmp_path / "back"
    await box.copy_out("/root/big", str(back))
    assert back.stat().st_size == 256 << 20
    with back.open("rb") as handle:
        handle.seek(100 << 20)
        assert handle.read(6) == b"marker"


async def test_copy_out_never_hands_the_host_setuid_files_or_devices(box: boxlite.Box, tmp_path: Path) -> None:
    await sh(box, "cp /bin/true /root/suid && chmod 4755 /root/suid && ln -s /dev/zero /root/zero && ln -s /proc /root/procs")
    await box.copy_out("/root/suid", str(tmp_path / "suid"))
    assert (tmp_path / "suid").stat().st_mode & 0o7777 == 0o755
    with pytest.raises(boxlite.InvalidArgumentError):
        await box.copy_out("/root/zero", str(tmp_path / "zero"), boxlite.CopyOptions(follow_symlinks=True))
    with pytest.raises(boxlite.InvalidArgumentError, match="/proc, /sys or /dev"):
        await box.copy_out("/root/procs/1/status", str(tmp_path / "environ"))
    with pytest.raises(boxlite.InvalidArgumentError, match="/proc, /sys or /dev"):
        await box.copy_out("/root/procs", str(tmp_path / "environ"), boxlite.CopyOptions(follow_symlinks=True))
    with pytest.raises(boxlite.InvalidArgumentError, match="own filesystem"):
        await box.copy_in(str(tmp_path / "suid"), "/usr/bin/")
    assert not (tmp_path / "zero").exists() and not (tmp_path / "environ").exists()


async def test_follow_symlinks_follows_only_the_source(box: boxlite.Box, tmp_path: Path) -> None:
    source = tmp_path / "tree"
    source.mkdir()
    (source / "to-root").symlink_to("/")
    top = tmp_path / "top"
    top.symlink_to(source)
    await box.copy_in(str(top), "/root/copied", boxlite.CopyOptions(follow_symlinks=True))
    assert (await sh(box, "readlink /root/copied/to-root")).strip() == "/"
