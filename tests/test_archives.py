"""Archives: `box.export(dest=)` writes a box to one `.boxlite` file; `Boxlite.import_box` makes a
new, stopped box of it on another host (here: another home) with the same files, owners, modes,
times and options, verified as it is read; `untrusted=True` refuses what a stranger's archive
must not bring. A refused or damaged archive leaves nothing behind."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import boxlite

from .conftest import assert_no_leftovers, collect, layer_store
from .registry import Registry
from .test_clones import stopped_source
from .test_snapshots import HAS_WRITTEN, WRITER, WRITES_ON, see


@pytest.fixture
async def elsewhere(tmp_path: Path) -> AsyncIterator[boxlite.Boxlite]:
    """A runtime with a home of its own and no registry: another host, as far as boxes go."""
    home = tmp_path / "elsewhere"
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home)))
    try:
        yield runtime
    finally:
        runtime.close()
    assert_no_leftovers(home)


def members(archive: Path) -> list[tuple[str, int, int]]:
    """(name, offset of its data, size) of each member of a tar file."""
    with tarfile.open(archive) as tar:
        return [(member.name, member.offset_data, member.size) for member in tar.getmembers()]


def manifest_of(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        extracted = tar.extractfile("manifest.json")
        assert extracted is not None
        manifest: dict[str, Any] = json.load(extracted)
        return manifest


def rewrite(archive: Path, target: Path, change_manifest: Callable[[dict[str, Any]], None] | None = None, change_member: str | None = None) -> Path:
    """A copy of `archive` with its manifest changed by `change_manifest(manifest)`, or one byte
    of the member `change_member` flipped."""
    with tarfile.open(archive) as source, tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as copy:
        for member in source.getmembers():
            extracted = source.extractfile(member)
            data = extracted.read() if extracted is not None else b""
            if member.name == "manifest.json" and change_manifest is not None:
                manifest = json.loads(data)
                change_manifest(manifest)
                data = json.dumps(manifest).encode()
            if member.name == change_member:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
            member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    return target


async def test_an_archive_brings_a_box_with_its_files_and_options_to_another_host(
    runtime: boxlite.Boxlite, elsewhere: boxlite.Boxlite, busybox_image: str, tmp_path: Path
) -> None:
    options = boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False, env=[("FLAVOUR", "plain")], memory_mib=300)
    source, files = await stopped_source(runtime, options)
    await source.snapshot.create(name="kept-here")

    archive = await source.export(dest=str(tmp_path))
    assert archive == str(tmp_path / "source.boxlite"), "a directory takes <name>.boxlite"
    assert [name for name, _, _ in members(Path(archive))][0] == "manifest.json"
    assert sorted(os.listdir(tmp_path)).count("source.boxlite") == 1 and not [name for name in os.listdir(tmp_path) if name.startswith(".")]
    with pytest.raises(boxlite.AlreadyExistsError, match="never replaces"):
        await source.export(dest=archive)

    moved = await elsewhere.import_box(archive, name="moved")
    info = await moved.info()
    assert (moved.name, info.state.status, info.image, info.memory_mib) == ("moved", "stopped", busybox_image, 300)
    assert moved.id != source.id
    assert await see(moved) == files, "the same files, owners, modes, times, links and deletions"
    stdout, _, _ = await collect(await moved.exec("sh", ["-c", "echo $FLAVOUR; touch /root/new"]))
    assert stdout == b"plain\n"
    assert await moved.snapshot.list() == [], "snapshots stay with their box"
    assert await see(source) == files, "the source is untouched"

    # Imported again on the same host it is another box: no name unless one is given.
    again = await runtime.import_box(archive)
    assert again.name is None and again.id not in (source.id, moved.id)
    assert await see(again) == files
    with pytest.raises(boxlite.InvalidArgumentError, match="'source' already exists"):
        await runtime.import_box(archive, name="source")
    for box, owner in ((source, runtime), (again, runtime), (moved, elsewhere)):
        await box.stop()
        await owner.remove(box.id)
    assert await elsewhere.list_info() == [] and await runtime.list_info() == []


async def test_the_image_travels_with_the_box_to_a_host_without_its_registry(
    tmp_path: Path, busybox_image: str, elsewhere: boxlite.Boxlite, home: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    try:
        registry.push(Path(busybox_image), "test/busybox", "1")
        reference = f"{registry.host}/test/busybox:1"
        pulling = boxlite.Boxlite(boxlite.Options(home_dir=str(home), image_registries=[boxlite.ImageRegistry(host=registry.host, transport="http")]))
        try:
            box = await pulling.create(boxlite.BoxOptions(image=reference, auto_remove=False), name="pulled")
            await collect(await box.exec("sh", ["-c", "echo kept > /root/note"]))
            await box.stop()
            stopped = await pulling.get("pulled")
            assert stopped is not None
            archive = await stopped.export(dest=str(tmp_path / "pulled.boxlite"))
        finally:
            pulling.close()
    finally:
        registry.stop()

    manifest = manifest_of(Path(archive))
    assert manifest["image"]["kind"] == "layers" and len(manifest["image"]["layers"]) == 1
    moved = await elsewhere.import_box(archive)
    assert (await moved.info()).image == reference
    stdout, _, status = await collect(await moved.exec("sh", ["-c", "cat /root/note; echo $GREETING"]))
    assert (stdout, status.exit_code) == (b"kept\nfrom-image\n", 0), "the image's files and config came with it"
    assert os.listdir(layer_store(tmp_path / "elsewhere")), "its layer is in the new home's store"
    await moved.stop()


async def test_a_running_box_is_exported_frozen_and_goes_on(runtime: boxlite.Boxlite, elsewhere: boxlite.Boxlite, tmp_path: Path) -> None:
    source = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    writer = await source.exec("sh", ["-c", WRITER])
    assert (await collect(await source.exec("sh", ["-c", HAS_WRITTEN])))[0] == b"written\n"
    archive = await source.export(dest=str(tmp_path / "running.boxlite"))
    assert (await collect(await source.exec("sh", ["-c", WRITES_ON])))[0] == b"grew\n", "the source goes on"
    writer.close()
    moved = await elsewhere.import_box(archive)
    stdout, _, _ = await collect(await moved.exec("cat", ["/root/log"]))
    lines = stdout.decode().splitlines()
    assert lines and all(line == f"line-{number}-end" for number, line in enumerate(lines[:-1], start=1))
    await moved.stop()
    await source.stop()


@pytest.mark.root_only("a disk of a box's own is a loop device")
async def test_a_box_with_a_disk_travels_sparse(runtime: boxlite.Boxlite, elsewhere: boxlite.Boxlite, busybox_image: str, tmp_path: Path) -> None:
    source, files = await stopped_source(runtime, boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False, disk_size_gb=1))
    archive = Path(await source.export(dest=str(tmp_path / "disk.boxlite")))
    manifest = manifest_of(archive)
    assert (manifest["layer"], manifest["box"]["disk_size_gb"]) == ("disk", 1)
    assert archive.stat().st_size < 256 << 20, "only the disk's data travels, not its holes"
    moved = await elsewhere.import_box(str(archive))
    assert await see(moved) == files
    stdout, _, _ = await collect(await moved.exec("sh", ["-c", "stat -c '%u:%g %a' /root/tree/old /root/tree/setuid"]))
    assert stdout == (b"1000:1000 644\n0:0 4750\n")
    await moved.stop()
    with pytest.raises(boxlite.UnsupportedError, match="disk image"):
        await elsewhere.import_box(str(archive), untrusted=True)


async def test_a_changed_or_damaged_archive_is_refused_and_leaves_nothing(
    runtime: boxlite.Boxlite, elsewhere: boxlite.Boxlite, busybox_image: str, tmp_path: Path
) -> None:
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False), name="good")
    await collect(await box.exec("sh", ["-c", "echo data > /root/file"]))
    await box.stop()
    stopped = await runtime.get("good")
    assert stopped is not None
    archive = Path(await stopped.export(dest=str(tmp_path / "good.boxlite")))
    other_home = tmp_path / "elsewhere"

    flipped_layer = rewrite(archive, tmp_path / "flipped-layer.boxlite", change_member="layer.tar")
    image_member = next(name for name, _, _ in members(archive) if name.startswith("image/"))
    flipped_image = rewrite(archive, tmp_path / "flipped-image.boxlite", change_member=image_member)
    truncated = tmp_path / "truncated.boxlite"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size * 3 // 4])
    not_an_archive = tmp_path / "text.boxlite"
    not_an_archive.write_text("hello")

    def newer(manifest: dict[str, Any]) -> None:
        manifest["version"] = 2

    def more_power(manifest: dict[str, Any]) -> None:
        manifest["box"]["capabilities"].append(21)  # SYS_ADMIN: no create may ask for it

    for damaged, error, message in [
        (flipped_layer, boxlite.InvalidArgumentError, "not a usable box archive: layer.tar"),
        (flipped_image, boxlite.InvalidArgumentError, f"not a usable box archive: {image_member} was changed or damaged"),
        (truncated, boxlite.InvalidArgumentError, "not a usable box archive"),
        (not_an_archive, boxlite.InvalidArgumentError, "not a usable box archive"),
        (rewrite(archive, tmp_path / "newer.boxlite", newer), boxlite.UnsupportedError, "version 2"),
        (rewrite(archive, tmp_path / "power.boxlite", more_power), boxlite.InvalidArgumentError, "SYS_ADMIN|capabilit"),
    ]:
        with pytest.raises(error, match=message):
            await elsewhere.import_box(str(damaged), name="imported")
        assert await elsewhere.list_info() == [], damaged.name
        assert os.listdir(other_home / "boxes") == [], f"{damaged.name} left a box directory"
    with pytest.raises(boxlite.NotFoundError, match="does not exist"):
        await elsewhere.import_box(str(tmp_path / "missing.boxlite"))
    # The name a refused import held is free again.
    moved = await elsewhere.import_box(str(archive), name="imported")
    stdout, _, _ = await collect(await moved.exec("cat", ["/root/file"]))
    assert stdout == b"data\n"
    await moved.stop()


async def test_an_untrusted_archive_brings_no_host_paths_or_extra_capabilities(
    runtime: boxlite.Boxlite, elsewhere: boxlite.Boxlite, busybox_image: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the host\n")
    with_volume = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False, volumes=[(str(shared), "/data", True)]))
    powerful = await runtime.create(
        boxlite.BoxOptions(
            rootfs_path=busybox_image,
            auto_remove=False,
            advanced=boxlite.AdvancedBoxOptions(capabilities=boxlite.ContainerCapabilities(add=["NET_ADMIN"])),
        )
    )
    plain = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False))
    # A named volume is the importing home's own, not a host path: it comes, if it exists there.
    await runtime.volumes.create("cache")
    named = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False, volumes=[("volume://cache", "/cache")]))
    archives = {box.id: await box.export(dest=str(tmp_path / f"{box.id}.boxlite")) for box in (with_volume, powerful, plain, named)}

    with pytest.raises(boxlite.UnsupportedError, match="volumes"):
        await elsewhere.import_box(archives[with_volume.id], untrusted=True)
    with pytest.raises(boxlite.UnsupportedError, match="capability"):
        await elsewhere.import_box(archives[powerful.id], untrusted=True)
    assert await elsewhere.list_info() == []
    untrusted = await elsewhere.import_box(archives[plain.id], untrusted=True)
    assert (await collect(await untrusted.exec("echo", ["ok"])))[0] == b"ok\n"
    with pytest.raises(boxlite.NotFoundError, match="volume cache does not exist"):
        await elsewhere.import_box(archives[named.id], untrusted=True)
    await elsewhere.volumes.create("cache")
    with_named = await elsewhere.import_box(archives[named.id], untrusted=True)
    assert (await collect(await with_named.exec("sh", ["-c", "echo here > /cache/f"])))[2].exit_code == 0
    assert (Path((await elsewhere.volumes.get("cache")).path) / "f").read_text() == "here\n"

    # Trusted, the same archives come with what they ask for.
    trusted = await elsewhere.import_box(archives[with_volume.id])
    assert (await collect(await trusted.exec("cat", ["/data/hello"])))[0] == b"from the host\n"
    for box in (untrusted, trusted, with_named):
        await box.stop()
    for box in (with_volume, powerful, plain, named):
        await runtime.remove(box.id, force=True)
    await runtime.volumes.remove("cache")


async def test_export_refuses_a_missing_directory_and_a_removed_box(runtime: boxlite.Boxlite, tmp_path: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(auto_remove=False))
    exports = tmp_path / "exports"
    exports.mkdir()
    with pytest.raises(boxlite.NotFoundError, match="does not exist"):
        await box.export(dest=str(exports / "no-such-dir" / "box.boxlite"))
    with pytest.raises(boxlite.InvalidArgumentError, match="destination must not be empty"):
        await box.export(dest="")
    await runtime.remove(box.id)
    with pytest.raises(boxlite.NotFoundError):
        await box.export(dest=str(exports / "gone.boxlite"))
    assert os.listdir(exports) == [], "nothing half-written"


async def test_a_cancelled_export_leaves_no_archive(runtime: boxlite.Boxlite, busybox_image: str, tmp_path: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False), name="big")
    await collect(await box.exec("sh", ["-c", "head -c 50000000 /dev/zero > /root/big"]))
    await box.stop()
    stopped = await runtime.get("big")
    assert stopped is not None
    box = stopped
    exports = tmp_path / "exports"
    exports.mkdir()
    export = asyncio.ensure_future(box.export(dest=str(exports / "cancelled.boxlite")))
    await asyncio.sleep(0)
    export.cancel()
    with pytest.raises(asyncio.CancelledError):
        await export
    # The export runs to its end in the background (its staging directory comes and goes), and
    # the archive is deleted when its result reaches nobody.
    began = False
    for _ in range(4000):
        entries = os.listdir(exports)
        began = began or bool(entries)
        if began and not entries:
            break
        await asyncio.sleep(0.005)
    assert began, "the export never began"
    assert os.listdir(exports) == []
