"""Pulling from a real registry on loopback: images built offline by the suite, pushed to
Debian's docker-registry, pulled by boxes; caching, search registries and bad references."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
import logging
import os
from pathlib import Path

import pytest

import boxlite

from .conftest import collect, layer_store, logged, subordinate_ids
from .registry import Registry, free_port


@pytest.fixture
def registry(tmp_path: Path, busybox_image: str) -> Iterator[Registry]:
    server = Registry(tmp_path / "registry")
    server.push(Path(busybox_image), "test/busybox", "1")
    yield server
    server.stop()


@pytest.fixture
async def pulling_runtime(home: Path, registry: Registry) -> AsyncIterator[boxlite.Boxlite]:
    registries = [boxlite.ImageRegistry(host=registry.host, transport="http", search=True)]
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home), image_registries=registries))
    try:
        yield runtime
    finally:
        runtime.close()


async def test_pull_list_and_run_an_image_from_the_registry(pulling_runtime: boxlite.Boxlite, registry: Registry) -> None:
    reference = f"{registry.host}/test/busybox:1"
    result = await pulling_runtime.images.pull(reference)
    assert (result.reference, result.layer_count) == (reference, 1)
    assert result.config_digest.startswith("sha256:")
    images = await pulling_runtime.images.list()
    assert [(image.repository, image.tag, image.id) for image in images] == [(f"{registry.host}/test/busybox", "1", result.config_digest)]
    box = await pulling_runtime.create(boxlite.BoxOptions(image=reference))
    assert (await box.info()).image == reference
    stdout, _, status = await collect(await box.exec("sh", ["-c", "echo $GREETING"]))
    assert (stdout, status.exit_code) == (b"from-image\n", 0)


async def test_a_cached_image_needs_no_registry(pulling_runtime: boxlite.Boxlite, registry: Registry) -> None:
    reference = f"{registry.host}/test/busybox:1"
    await pulling_runtime.create(boxlite.BoxOptions(image=reference))
    registry.stop()
    box = await pulling_runtime.create(boxlite.BoxOptions(image=reference))
    stdout, _, _ = await collect(await box.exec("echo", ["offline"]))
    assert stdout == b"offline\n"


async def test_an_unreadable_image_record_is_reported_and_pulled_again(pulling_runtime: boxlite.Boxlite, registry: Registry, home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="boxlite")
    reference = f"{registry.host}/test/busybox:1"
    await pulling_runtime.images.pull(reference)
    [record] = (home / "images").glob("*.json")
    record.write_text("{not json")
    assert await pulling_runtime.images.list() == []
    await logged(caplog, "is left out")
    box = await pulling_runtime.create(boxlite.BoxOptions(image=reference))
    stdout, _, _ = await collect(await box.exec("echo", ["pulled again"]))
    assert stdout == b"pulled again\n"
    assert [image.reference for image in await pulling_runtime.images.list()] == [reference]


async def test_search_registries_serve_unqualified_names(pulling_runtime: boxlite.Boxlite, registry: Registry) -> None:
    box = await pulling_runtime.create(boxlite.BoxOptions(image="test/busybox:1"))
    stdout, _, _ = await collect(await box.exec("echo", ["found"]))
    assert stdout == b"found\n"


async def test_a_one_word_name_is_asked_for_under_library_and_reported_as_written(pulling_runtime: boxlite.Boxlite, registry: Registry, busybox_image: str) -> None:
    # As Docker Hub files its official images, and as a Docker Hub mirror serves them.
    registry.push(Path(busybox_image), "library/busybox", "1")
    result = await pulling_runtime.images.pull("busybox:1")
    assert result.reference == "busybox:1"
    [image] = [image for image in await pulling_runtime.images.list() if image.reference == "busybox:1"]
    assert (image.repository, image.tag) == (f"{registry.host}/library/busybox", "1")
    box = await pulling_runtime.create(boxlite.BoxOptions(image="busybox:1"))
    stdout, _, _ = await collect(await box.exec("echo", ["official"]))
    assert stdout == b"official\n"


async def test_unknown_images_are_not_found_and_leave_nothing(pulling_runtime: boxlite.Boxlite, registry: Registry, home: Path) -> None:
    for reference in (f"{registry.host}/test/busybox:nope", f"{registry.host}/test/missing:1"):
        with pytest.raises(boxlite.NotFoundError, match=reference.split("/", 1)[1].replace(":", ".")):
            await pulling_runtime.images.pull(reference)
    assert await pulling_runtime.images.list() == []
    assert await pulling_runtime.list_info() == []
    assert list((home / "blobs" / "tmp").iterdir()) == []


async def test_a_registry_that_is_down_fails_fast(home: Path) -> None:
    port = free_port()
    registries = [boxlite.ImageRegistry(host=f"127.0.0.1:{port}", transport="http")]
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home), image_registries=registries))
    try:
        started = time.monotonic()
        with pytest.raises(boxlite.NetworkError, match=f"127.0.0.1:{port}"):
            await runtime.create(boxlite.BoxOptions(image=f"127.0.0.1:{port}/test/busybox:1"))
        assert time.monotonic() - started < 30, "bounded, not hanging"
    finally:
        runtime.close()


async def test_a_tampered_blob_is_refused_and_not_cached(pulling_runtime: boxlite.Boxlite, registry: Registry, home: Path, busybox_image: str) -> None:
    index = json.loads((Path(busybox_image) / "index.json").read_text())
    manifest = json.loads((Path(busybox_image) / "blobs/sha256" / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    blob = registry.blob_file(manifest["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(boxlite.ImageError):
        await pulling_runtime.images.pull(f"{registry.host}/test/busybox:1")
    assert list(layer_store(home).iterdir()) == []
    assert list((home / "blobs" / "sha256").iterdir()) == []
    assert await pulling_runtime.images.list() == []


def test_registry_options_are_validated_and_secrets_hidden() -> None:
    for kwargs, message in [
        ({"host": " "}, "image registry host is required"),
        ({"host": "https://example.com"}, "must be host\\[:port\\], not a URL"),
        ({"host": "example.com/path"}, "not a URL"),
        ({"host": "example.com", "transport": "ftp"}, "unsupported registry transport: ftp"),
        ({"host": "example.com", "username": "me"}, "must be provided together"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            boxlite.ImageRegistry(**kwargs)  # type: ignore[arg-type]
    registry = boxlite.ImageRegistry(host="example.com", username="me", password="hunter2")
    options = boxlite.Options(image_registries=[registry, boxlite.ImageRegistry(host="ghcr.io", bearer_token="tok-secret")])
    assert "hunter2" not in repr(registry) and "tok-secret" not in repr(options.image_registries)
    assert repr(registry) == "ImageRegistry(host='example.com', transport='https', skip_verify=False, search=False, auth=basic)"


async def test_prune_deletes_only_layers_nothing_uses(pulling_runtime: boxlite.Boxlite, registry: Registry, home: Path, busybox_image: str, tmp_path: Path) -> None:
    reference = f"{registry.host}/test/busybox:1"
    await pulling_runtime.images.pull(reference)
    assert await pulling_runtime.images.prune() == 0, "an indexed image keeps its layers"
    await pulling_runtime.images.remove(reference)
    assert await pulling_runtime.images.prune() == 1
    assert list(layer_store(home).iterdir()) == [] and list((home / "blobs" / "sha256").iterdir()) == []
    # A box keeps its image's layers even when no index entry names them.
    box = await pulling_runtime.create(boxlite.BoxOptions(image=reference))
    await pulling_runtime.images.remove(reference)
    assert await pulling_runtime.images.prune() == 0
    stdout, _, _ = await collect(await box.exec("echo", ["kept"]))
    assert stdout == b"kept\n"


async def test_prune_reaches_the_layer_stores_of_boxes_with_other_ids(registry: Registry, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A home used by runtimes whose boxes have other ids (root's with and without a user
    namespace, an ordinary user's with and without subordinate ids) has a layer store for each:
    prune reaches them all, but leaves a store of subordinate ids to a runtime that maps them."""
    if os.geteuid() != 0:
        subordinate_ids()
    reference = f"{registry.host}/test/busybox:1"

    def opened() -> boxlite.Boxlite:
        return boxlite.Boxlite(boxlite.Options(home_dir=str(home), image_registries=[boxlite.ImageRegistry(host=registry.host, transport="http")]))

    other_ids = ("BOXLITE_USER_NAMESPACES", "0") if os.geteuid() == 0 else ("BOXLITE_SUBORDINATE_IDS", "0")
    monkeypatch.setenv(*other_ids)
    with opened() as runtime:
        kept = await runtime.create(boxlite.BoxOptions(image=reference, auto_remove=False))
        await kept.stop()
    other_store = layer_store(home)
    monkeypatch.delenv(other_ids[0])
    with opened() as runtime:
        box = await runtime.create(boxlite.BoxOptions(image=reference))
        stdout, _, _ = await collect(await box.exec("echo", ["here"]))
        assert stdout == b"here\n"
        await runtime.remove(box.id, force=True)
        await runtime.images.remove(reference)
        assert await runtime.images.prune() == 1, "the layer only the removed image named goes"
        assert len(list(other_store.iterdir())) == 1, "the other store's layer stays for its box"
        await runtime.remove(kept.id)
        assert await runtime.images.prune() == 1, "then it goes too"
        assert list(other_store.iterdir()) == []
        if os.geteuid() != 0:
            await runtime.images.pull(reference)
            await runtime.images.remove(reference)
    if os.geteuid() != 0:
        (ranged,) = [store for store in (home / "layers").iterdir() if store.name.startswith("subordinate-")]
        monkeypatch.setenv(*other_ids)
        with opened() as runtime:
            assert await runtime.images.prune() == 0, "a runtime with one id may not remove what subordinate ids own"
        assert len(list(ranged.iterdir())) == 1
        monkeypatch.delenv(other_ids[0])
        with opened() as runtime:
            assert await runtime.images.prune() == 1
        assert list(ranged.iterdir()) == []


async def test_a_prune_beside_creates_and_imports_keeps_the_layers_they_take(runtime: boxlite.Boxlite, busybox_image: str, tmp_path: Path) -> None:
    """A box being made holds the layers it takes until it is listed, so a prune at the same
    time never deletes them under it."""
    source = await runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False))
    archive = await source.export(dest=str(tmp_path / "source.boxlite"))
    await runtime.remove(source.id)
    for _ in range(5):
        created, _, imported = await asyncio.gather(
            runtime.create(boxlite.BoxOptions(rootfs_path=busybox_image, auto_remove=False)), runtime.images.prune(), runtime.import_box(archive)
        )
        for box in (created, imported):
            assert (await collect(await box.exec("echo", ["ok"])))[0] == b"ok\n"
            await runtime.remove(box.id, force=True)


async def test_pull_progress_reaches_the_loop_per_layer(pulling_runtime: boxlite.Boxlite, registry: Registry) -> None:
    import threading

    reports: list[tuple[str, int, int]] = []
    threads: set[int] = set()

    def progress(layer: str, done: int, total: int) -> None:
        reports.append((layer, done, total))
        threads.add(threading.get_ident())

    with pytest.raises(TypeError, match="callable"):
        pulling_runtime.images.pull("x", progress=42)  # type: ignore[arg-type]
    result = await pulling_runtime.images.pull(f"{registry.host}/test/busybox:1", progress=progress)
    assert result.layer_count == 1 and reports
    layer, done, total = reports[-1]
    assert layer.startswith("sha256:") and done == total > 0
    assert [report[1] for report in reports] == sorted(report[1] for report in reports)
    assert threads == {threading.get_ident()}


async def test_a_registry_with_basic_auth(home: Path, tmp_path: Path, busybox_image: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="boxlite")
    server = Registry(tmp_path / "auth-registry", credentials=("alice", "s3cret"))
    try:
        server.push(Path(busybox_image), "private/busybox", "1")
        reference = f"{server.host}/private/busybox:1"
        anonymous = boxlite.Boxlite(boxlite.Options(home_dir=str(home), image_registries=[boxlite.ImageRegistry(host=server.host, transport="http")]))
        try:
            with pytest.raises(boxlite.ImageError, match="access denied") as refused:
                await anonymous.images.pull(reference)
        finally:
            anonymous.close()
        wrong = boxlite.ImageRegistry(host=server.host, transport="http", username="alice", password="wrong-password")
        runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home), image_registries=[wrong]))
        try:
            with pytest.raises(boxlite.ImageError, match="access denied") as denied:
                await runtime.images.pull(reference)
            assert "wrong-password" not in str(denied.value) and "wrong-password" not in str(refused.value)
        finally:
            runtime.close()
        right = boxlite.ImageRegistry(host=server.host, transport="http", username="alice", password="s3cret")
        runtime = boxlite.Boxlite(boxlite.Options(home_dir=str(home), image_registries=[right]))
        try:
            assert (await runtime.images.pull(reference)).layer_count == 1
        finally:
            runtime.close()
        await logged(caplog, f"pulled {reference}")
        assert not [record for record in caplog.records if "s3cret" in record.getMessage() or "wrong-password" in record.getMessage()]
    finally:
        server.stop()


async def test_concurrent_pulls_download_each_blob_once(pulling_runtime: boxlite.Boxlite, registry: Registry, busybox_image: str) -> None:
    import asyncio

    index = json.loads((Path(busybox_image) / "index.json").read_text())
    manifest = json.loads((Path(busybox_image) / "blobs/sha256" / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    layer = manifest["layers"][0]["digest"]
    reference = f"{registry.host}/test/busybox:1"
    results = await asyncio.gather(*[pulling_runtime.images.pull(reference) for _ in range(5)])
    assert {result.config_digest for result in results} == {results[0].config_digest}
    assert registry.blob_fetches(layer) == 1


async def test_a_cancelled_pull_leaves_nothing_half_written(pulling_runtime: boxlite.Boxlite, registry: Registry, home: Path) -> None:
    import asyncio

    reference = f"{registry.host}/test/busybox:1"
    pulling = pulling_runtime.images.pull(reference)
    pulling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pulling
    # The pull runs on in the background; a new one shares or repeats its work and succeeds.
    result = await pulling_runtime.images.pull(reference)
    assert result.layer_count == 1
    assert list((home / "blobs" / "tmp").iterdir()) == [] and list((home / "layers" / "tmp").iterdir()) == []
    box = await pulling_runtime.create(boxlite.BoxOptions(image=reference))
    stdout, _, _ = await collect(await box.exec("echo", ["whole"]))
    assert stdout == b"whole\n"


async def test_an_image_is_detailed_by_name_with_its_versions_and_tags(pulling_runtime: boxlite.Boxlite, registry: Registry, busybox_image: str) -> None:
    for tag in ("1", "2"):  # one manifest under two tags
        registry.push(Path(busybox_image), "library/busybox", tag)
        await pulling_runtime.images.pull(f"busybox:{tag}")
    detail = await pulling_runtime.images.get("busybox:1")
    assert detail.name == f"{registry.host}/library/busybox"
    [version] = detail.versions
    assert sorted(version.aliases) == sorted(detail.aliases) == ["1", "2"]
    assert version.digest.startswith("sha256:") and version.size_bytes > 0
    assert (version.last_used_at, version.upstream_missing_at, detail.history, detail.curated) == (None, None, [], False)
    with pytest.raises(boxlite.NotFoundError):
        await pulling_runtime.images.get("busybox:3")
