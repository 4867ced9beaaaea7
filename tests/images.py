"""Test images, built offline from Debian packages and written as OCI image layouts.

The layouts are cached under ``$BOXLITE_TEST_CACHE`` (default ``~/.cache/boxlite-tests``) and
rebuilt when their recipe changes. Nothing here reaches a registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

CACHE = Path(os.environ.get("BOXLITE_TEST_CACHE", Path.home() / ".cache" / "boxlite-tests"))
RECIPE_VERSION = "1"

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nwheel:x:10:alice\n"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_directory(root: Path, owners: dict[str, int] | None = None) -> bytes:
    """A reproducible tar of ``root`` (sorted, zero mtimes). Entries belong to root, but for the
    relative paths ``owners`` gives an id (uid and gid) of their own: written into the headers,
    so an ordinary user builds the same image as root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(root.rglob("*")):
            relative = str(path.relative_to(root))
            info = archive.gettarinfo(str(path), arcname=relative)
            info.mtime = 0
            info.uname = info.gname = ""
            info.uid = info.gid = (owners or {}).get(relative, 0)
            if info.isfile():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return buffer.getvalue()


def zstd_frames(data: bytes, frames: int = 1) -> bytes:
    """``data`` compressed with Debian's zstd, split over ``frames`` concatenated frames."""
    step = -(-len(data) // frames)
    parts = [data[index : index + step] for index in range(0, len(data), step)]
    return b"".join(subprocess.run(["zstd", "-q", "-c"], input=part, capture_output=True, check=True).stdout for part in parts)


def write_layout(dest: Path, layers: list[bytes], config: dict[str, object], *, compress: bool = True, zstd_frame_count: int = 0) -> Path:
    """Writes an OCI image layout with ``layers`` (uncompressed tars, bottom first), gzip-compressed,
    zstd-compressed (``zstd_frame_count`` frames) or plain."""
    if dest.exists():
        shutil.rmtree(dest)
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = _sha256(data)
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return digest

    layer_descriptors = []
    diff_ids = []
    for layer in layers:
        diff_ids.append(_sha256(layer))
        if zstd_frame_count:
            blob, media = zstd_frames(layer, zstd_frame_count), "application/vnd.oci.image.layer.v1.tar+zstd"
        elif compress:
            blob, media = gzip.compress(layer, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
        else:
            blob, media = layer, "application/vnd.oci.image.layer.v1.tar"
        layer_descriptors.append({"mediaType": media, "digest": put(blob), "size": len(blob)})
    config_blob = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": config, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config_blob), "size": len(config_blob)},
            "layers": layer_descriptors,
        }
    ).encode()
    manifest_digest = put(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    (dest / "index.json").write_text(json.dumps(index))
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return dest


def _busybox_binary() -> Path:
    """Debian's busybox-static binary: installed by .ci/run, or fetched with apt-get download."""
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"], capture_output=True, text=True).stdout
    if status.endswith("installed") and Path("/bin/busybox").exists():
        return Path("/bin/busybox")
    work = CACHE / "debs"
    work.mkdir(parents=True, exist_ok=True)
    extracted = work / "busybox-static"
    binary = extracted / "bin" / "busybox"
    if not binary.exists():
        subprocess.run(["apt-get", "download", "busybox-static"], cwd=work, check=True, capture_output=True)
        deb = next(work.glob("busybox-static_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(extracted)], check=True)
    return binary


def busybox_rootfs(root: Path) -> None:
    """A tiny Linux userland: static busybox with its applets, /etc/passwd and /etc/group."""
    binary = _busybox_binary()
    (root / "bin").mkdir(parents=True)
    shutil.copy2(binary, root / "bin" / "busybox")
    applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    etc = root / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    for directory in ("tmp", "root", "home/alice", "proc", "dev", "sys"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)


# Who owns what in the busybox image, besides root (for ``tar_directory``).
BUSYBOX_OWNERS = {"home/alice": 1000}


def busybox_layout() -> Path:
    """The cached busybox image layout (one layer)."""
    dest = CACHE / f"busybox-oci-{RECIPE_VERSION}"
    if (dest / "index.json").exists():
        return dest
    staging = CACHE / "staging-busybox"
    if staging.exists():
        shutil.rmtree(staging)
    busybox_rootfs(staging)
    config = {"Env": ["PATH=/bin", "GREETING=from-image"], "Cmd": ["sh"], "WorkingDir": "/root"}
    write_layout(CACHE / "busybox-building", [tar_directory(staging, BUSYBOX_OWNERS)], config)
    shutil.rmtree(staging)
    if dest.exists():
        shutil.rmtree(dest)
    (CACHE / "busybox-building").rename(dest)
    return dest


def tar_of(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar built entry by entry, for crafted (including malicious) layers."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()
