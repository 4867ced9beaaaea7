"""Images from local OCI image layouts: a real busybox image built from Debian's busybox-static,
layer stacking with whiteouts, and layouts that are missing, malformed or malicious."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

import boxlite

from . import images
from .conftest import checked_runtime, collect, layer_store, subordinate_ids


def entry(name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes = b"", link: str = "", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def directory(name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return entry(name, tarfile.DIRTYPE, mode=0o755)


async def test_a_busybox_image_runs_with_its_config(runtime: boxlite.Boxlite, busybox_image: str) -> None:
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image))
    assert (await box.info()).image == busybox_image
    stdout, _, status = await collect(await box.exec("sh", ["-c", "echo $GREETING $(pwd); busybox | head -1 | cut -d' ' -f1"]))
    assert status.exit_code == 0
    assert stdout.split() == [b"from-image", b"/root", b"BusyBox"]


async def test_the_images_users_and_groups_apply(home: Path, busybox_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice is a user other than root: a box has her with a range of ids, root's own or, for an
    ordinary user, its subordinate ids (BOXLITE_SUBORDINATE_IDS=1, which root's runtime ignores)."""
    if os.geteuid() != 0:
        subordinate_ids()
    monkeypatch.setenv("BOXLITE_SUBORDINATE_IDS", "1")
    async with checked_runtime(home) as runtime:
        box = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image))
        stdout, _, _ = await collect(await box.exec("id", user="alice"))
        assert stdout.startswith(b"uid=1000(alice) gid=1000(alice) groups=")
        assert set(stdout.split(b"groups=")[1].strip().split(b",")) == {b"1000(alice)", b"10(wheel)"}
        stdout, _, _ = await collect(await box.exec("stat", ["-c", "%u:%g", "/home/alice"]))
        assert stdout == b"1000:1000\n", "the layer's owners are kept"
        _, stderr, status = await collect(await box.exec("touch", ["/home/alice/made"], user="alice"))
        assert status.exit_code == 0, stderr
        await box.stop()


async def test_layers_stack_with_whiteouts_and_opaque_directories(runtime: boxlite.Boxlite, busybox_image: str, tmp_path: Path) -> None:
    base = (Path(busybox_image) / "blobs" / "sha256")
    index = json.loads((Path(busybox_image) / "index.json").read_text())
    manifest = json.loads((base / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    busybox_layer = (base / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes()
    import gzip

    lower = images.tar_of([directory("data"), entry("data/keep", data=b"k"), entry("data/drop", data=b"d"), directory("opaque"), entry("opaque/old", data=b"o")])
    upper = images.tar_of([entry("data/.wh.drop"), directory("opaque"), entry("opaque/.wh..wh..opq"), entry("opaque/new", data=b"n")])
    layout = images.write_layout(tmp_path / "stacked", [gzip.decompress(busybox_layer), lower, upper], {"Env": ["PATH=/bin"]}, compress=False)
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=str(layout)))
    stdout, _, _ = await collect(await box.exec("sh", ["-c", "ls /data; ls /opaque"]))
    assert stdout.split() == [b"keep", b"new"]


async def test_layer_xattrs_apply_user_ones_and_drop_the_rest(runtime: boxlite.Boxlite, busybox_image: str, home: Path, tmp_path: Path) -> None:
    base = Path(busybox_image) / "blobs" / "sha256"
    index = json.loads((Path(busybox_image) / "index.json").read_text())
    manifest = json.loads((base / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    import gzip

    busybox_layer = gzip.decompress((base / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes())
    lower = images.tar_of([directory("kept"), entry("kept/from-lower", data=b"l")])
    tagged, _ = entry("kept/tagged", data=b"t")
    tagged.pax_headers = {"SCHILY.xattr.user.origin": "layer", "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0"}
    forged, _ = directory("kept")
    # Applied, this would make the directory opaque and hide the lower layer's file.
    forged.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
    upper = images.tar_of([(forged, None), (tagged, b"t")])
    layout = images.write_layout(tmp_path / "xattrs", [busybox_layer, lower, upper], {"Env": ["PATH=/bin"]}, compress=False)
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=str(layout)))
    stdout, _, _ = await collect(await box.exec("ls", ["/kept"]))
    assert stdout.split() == [b"from-lower", b"tagged"]
    unpacked = [path for path in (home / "layers").glob("*/*/kept/tagged")]
    assert len(unpacked) == 1
    import os

    assert os.getxattr(unpacked[0], "user.origin") == b"layer"
    assert "security.selinux" not in os.listxattr(unpacked[0])
    assert "trusted.overlay.opaque" not in os.listxattr(unpacked[0].parent)
    await box.stop()


@pytest.mark.parametrize("frames", [1, 3])
async def test_zstd_layers_unpack(runtime: boxlite.Boxlite, busybox_image: str, tmp_path: Path, frames: int) -> None:
    import gzip

    base = Path(busybox_image) / "blobs" / "sha256"
    index = json.loads((Path(busybox_image) / "index.json").read_text())
    manifest = json.loads((base / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    layer = gzip.decompress((base / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes())
    layout = images.write_layout(tmp_path / "zstd", [layer], {"Env": ["PATH=/bin"]}, zstd_frame_count=frames)
    box = await runtime.create(boxlite.BoxOptions(rootfs_path=str(layout)))
    stdout, _, status = await collect(await box.exec("sh", ["-c", "ls /bin | wc -l"]))
    assert status.exit_code == 0 and int(stdout) > 100


async def test_a_missing_layout_is_an_error_naming_the_path_and_leaves_nothing(runtime: boxlite.Boxlite, home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(boxlite.NotFoundError, match=str(missing)):
        await runtime.create(boxlite.BoxOptions(rootfs_path=str(missing)))
    not_a_layout = tmp_path / "plain"
    not_a_layout.mkdir()
    with pytest.raises(boxlite.ImageError, match="oci-layout"):
        await runtime.create(boxlite.BoxOptions(rootfs_path=str(not_a_layout)))
    assert await runtime.list_info() == []
    assert list((home / "boxes").iterdir()) == []


async def test_a_corrupt_blob_is_refused_and_nothing_is_cached(runtime: boxlite.Boxlite, home: Path, tmp_path: Path) -> None:
    layout = images.write_layout(tmp_path / "corrupt", [images.tar_of([entry("file", data=b"x")])], {})
    layer = json.loads((layout / "blobs/sha256" / json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].removeprefix("sha256:")).read_text())["layers"][0]
    blob = layout / "blobs/sha256" / layer["digest"].removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(boxlite.ImageError):
        await runtime.create(boxlite.BoxOptions(rootfs_path=str(layout)))
    assert list(layer_store(home).iterdir()) == []
    assert list((home / "layers" / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "entries"),
    [
        ("dot-dot", [entry("../escaped", data=b"x")]),
        ("nested-dot-dot", [directory("a"), entry("a/../../escaped", data=b"x")]),
        ("through-symlink", [entry("link", tarfile.SYMTYPE, link="{outside}"), entry("link/escaped", data=b"x")]),
        ("hardlink-outside", [entry("escaped", tarfile.LNKTYPE, link="{outside}/victim")]),
        ("hardlink-dot-dot", [entry("escaped", tarfile.LNKTYPE, link="../victim")]),
        ("whiteout-of-parent", [entry(".wh..."), entry("file", data=b"x")]),
    ],
)
async def test_malicious_layers_are_refused_and_write_nothing_outside(
    runtime: boxlite.Boxlite, home: Path, tmp_path: Path, name: str, entries: list[tuple[tarfile.TarInfo, bytes | None]]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("intact")
    for info, _ in entries:
        info.linkname = info.linkname.replace("{outside}", str(outside))
    layout = images.write_layout(tmp_path / name, [images.tar_of(entries)], {})
    with pytest.raises(boxlite.ImageError):
        await runtime.create(boxlite.BoxOptions(rootfs_path=str(layout)))
    assert sorted(path.name for path in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "intact"
    assert not (tmp_path / "escaped").exists() and not (home / "layers" / "escaped").exists()
    assert list(layer_store(home).iterdir()) == []
    assert await runtime.list_info() == []


async def test_a_second_box_reuses_the_unpacked_layers(runtime: boxlite.Boxlite, busybox_image: str, home: Path) -> None:
    await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image))
    layers = sorted(layer_store(home).iterdir())
    marker = layers[0] / "bin" / "busybox"
    before = marker.stat().st_ino
    await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image))
    assert sorted(layer_store(home).iterdir()) == layers
    assert marker.stat().st_ino == before

