"""A real OCI registry on loopback for the tests (Debian's docker-registry), and a small pusher
that uploads an OCI image layout to it over the distribution API."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on, for a test to publish or serve on. It comes from below the
    kernel's ephemeral range, so no outgoing connection of this host takes it between this probe
    and the test's own bind; each port is handed out once per process."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(max(1024, ephemeral_low - 10000), ephemeral_low))
    random.shuffle(candidates)
    for port in candidates:
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port below the ephemeral range (from {ephemeral_low})")


_handed_out: set[int] = set()


class Registry:
    """``docker-registry serve`` with filesystem storage under ``root``."""

    def __init__(self, root: Path, credentials: tuple[str, str] | None = None) -> None:
        """With ``credentials``, the registry wants HTTP basic auth (an htpasswd file made with
        Debian's apache2-utils). Its requests are logged to ``root/registry.log``."""
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.credentials = credentials
        config = root / "config.yml"
        root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if credentials is not None:
            htpasswd = subprocess.run(["htpasswd", "-Bbn", *credentials], capture_output=True, text=True, check=True).stdout
            (root / "htpasswd").write_text(htpasswd)
            auth = f"auth: {{htpasswd: {{realm: boxlite-tests, path: {root / 'htpasswd'}}}}}\n"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info, accesslog: {disabled: false}}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.host}'}}\n" + auth
        )
        self.log = (root / "registry.log").open("w")
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                    break
            except urllib.error.HTTPError as error:
                if error.code == 401:  # up, and asking for credentials
                    break
                raise
            except (OSError, urllib.error.URLError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.02)

    def _request(self, url: str, data: bytes | None = None, method: str = "GET") -> urllib.request.Request:
        request = urllib.request.Request(url, data=data, method=method)
        if self.credentials is not None:
            import base64

            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        return request

    def blob_fetches(self, digest: str) -> int:
        """How many times the blob was downloaded (GET requests in the access log)."""
        self.log.flush()
        text = (self.root / "registry.log").read_text()
        return sum(1 for line in text.splitlines() if '"GET /v2/' in line and f"/blobs/{digest}" in line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()

    def blob_file(self, digest: str) -> Path:
        hex_digest = digest.removeprefix("sha256:")
        return self.root / "data/docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"

    def push(self, layout: Path, repository: str, tag: str) -> str:
        """Uploads the layout's first image; returns its manifest digest."""
        blobs = layout / "blobs" / "sha256"
        index = json.loads((layout / "index.json").read_text())
        manifest_descriptor = index["manifests"][0]
        manifest_bytes = (blobs / manifest_descriptor["digest"].removeprefix("sha256:")).read_bytes()
        manifest = json.loads(manifest_bytes)
        for descriptor in [manifest["config"], *manifest["layers"]]:
            data = (blobs / descriptor["digest"].removeprefix("sha256:")).read_bytes()
            start = self._request(f"http://{self.host}/v2/{repository}/blobs/uploads/", method="POST")
            with urllib.request.urlopen(start) as response:
                location = response.headers["Location"]
            if location.startswith("/"):
                location = f"http://{self.host}{location}"
            separator = "&" if "?" in location else "?"
            upload = self._request(f"{location}{separator}digest={descriptor['digest']}", data=data, method="PUT")
            upload.add_header("Content-Type", "application/octet-stream")
            urllib.request.urlopen(upload).close()
        put = self._request(f"http://{self.host}/v2/{repository}/manifests/{tag}", data=manifest_bytes, method="PUT")
        put.add_header("Content-Type", manifest["mediaType"])
        urllib.request.urlopen(put).close()
        digest: str = manifest_descriptor["digest"]
        return digest
