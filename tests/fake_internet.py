"""A fake internet on this machine, for boxes' networks: a network namespace reached from the
host through a veth pair, with HTTP servers on TEST-NET addresses (one of them also a package
index, PEP 503's simple API, as ``pypi.test``), HTTPS servers (one with a certificate from the
fake internet's own authority, one an impostor with a certificate of its own; both log what
they receive) and a DNS server that answers the test names. Nothing leaves the machine; the host's resolv.conf and routes stay as they are
(the runtime is pointed at the fake DNS server through ``BOXLITE_DNS_SERVERS``).

Run as a script inside the namespace, this file is the DNS server (it answers A queries for
``NAMES`` and NXDOMAIN for the rest, and appends every name it was asked to its log), with
``--https`` an HTTPS server, or with ``--udp-echo`` a UDP echo server (port ``ECHO_PORT``:
each datagram back to its sender as it came).

Only root builds it. For tests run as an ordinary user, root serves one until it is stopped
(``python -m tests.fake_internet --serve DIR``) and the user's run names it
(``BOXLITE_TEST_INTERNET=DIR``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events

NAMESPACE = "boxlite-test-inet"
HOST_LINK = "bxl-inet-host"
FAR_LINK = "bxl-inet-far"
HOST_ADDRESS = "198.51.100.1"
WEB = "198.51.100.10"
OTHER_WEB = "203.0.113.10"
DNS = "198.51.100.53"
#: The UDP echo servers' port, on ``WEB`` and ``OTHER_WEB`` (RFC 862's); nothing listens on
#: ``CLOSED_UDP_PORT``.
ECHO_PORT = 7
CLOSED_UDP_PORT = 9
NAMES = {
    "allowed.test": WEB,
    "www.example.test": WEB,
    "other.test": OTHER_WEB,
    "example.test": OTHER_WEB,
    "api.secret.test": WEB,
    "plain.secret.test": WEB,
    "impostor.test": OTHER_WEB,
    "pypi.test": WEB,
}
#: The package index's projects: ``boxlite-probe`` needs ``boxlite-probe-dependency``, so an
#: install resolves through the index twice. Importing ``boxlite_probe`` gives ``GREETING``.
PROBE = "boxlite-probe"
PROBE_GREETING = "installed from the fake index"
#: The names the fake internet's authority certifies for the HTTPS server on ``WEB``.
CERTIFIED_NAMES = ("api.secret.test", "plain.secret.test")


#: Names the directory of a fake internet that root serves, for tests run as an ordinary user.
SERVED_VARIABLE = "BOXLITE_TEST_INTERNET"


@dataclass
class FakeInternet:
    directory: Path

    @property
    def dns_log(self) -> Path:
        return self.directory / "dns.log"

    @property
    def authority(self) -> Path:
        """The certificate of the fake internet's authority (PEM): trust it to reach its HTTPS."""
        return self.directory / "authority.pem"

    def queried(self) -> list[str]:
        return self.dns_log.read_text().split() if self.dns_log.exists() else []

    def https_requests(self, address: str = WEB) -> list[dict[str, object]]:
        """What the HTTPS server on ``address`` received: one entry a request (its ``host``,
        ``path``, ``headers`` and ``body``)."""
        log = self.directory / f"https-{address}.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def served() -> FakeInternet | None:
    """The fake internet root serves (``--serve``), if ``SERVED_VARIABLE`` names one."""
    directory = os.environ.get(SERVED_VARIABLE)
    return FakeInternet(Path(directory)) if directory else None


def _make_certificates(directory: Path) -> None:
    """The fake internet's authority, a certificate from it for ``CERTIFIED_NAMES``, and the
    impostor's own certificate for impostor.test, made with openssl."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    authority, authority_key = directory / "authority.pem", directory / "authority.key"
    _run("openssl", "req", "-x509", *ec, "-keyout", str(authority_key), "-out", str(authority), "-days", "3", "-subj", "/CN=boxlite fake internet authority",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    request = directory / "web.csr"
    _run("openssl", "req", "-new", *ec, "-keyout", str(directory / "web.key"), "-out", str(request), "-subj", f"/CN={CERTIFIED_NAMES[0]}")
    extensions = directory / "web.ext"
    extensions.write_text("subjectAltName=" + ",".join(f"DNS:{name}" for name in CERTIFIED_NAMES) + "\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _run("openssl", "x509", "-req", "-in", str(request), "-CA", str(authority), "-CAkey", str(authority_key), "-CAcreateserial", "-days", "3",
         "-extfile", str(extensions), "-out", str(directory / "web.pem"))
    _run("openssl", "req", "-x509", *ec, "-keyout", str(directory / "impostor.key"), "-out", str(directory / "impostor.pem"), "-days", "3",
         "-subj", "/CN=impostor.test", "-addext", "subjectAltName=DNS:impostor.test")
    for made in directory.iterdir():
        made.chmod(0o644)


def _make_package_index(site: Path) -> None:
    """A PEP 503 index under ``site/simple``: one page a project, linking its wheel (with its
    sha256, which pip checks) in ``site/packages``."""
    projects = {
        PROBE: ("boxlite_probe", "from boxlite_probe_dependency import PART\nGREETING = PART\n", ["boxlite-probe-dependency"]),
        "boxlite-probe-dependency": ("boxlite_probe_dependency", f"PART = {PROBE_GREETING!r}\n", []),
    }
    (site / "packages").mkdir(exist_ok=True)
    for project, (module, source, requires) in projects.items():
        wheel_name = f"{module}-1.0-py3-none-any.whl"
        wheel = site / "packages" / wheel_name
        _write_wheel(wheel, project, module, source, requires)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        page = site / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        (page / "index.html").write_text(f'<!DOCTYPE html><html><body><a href="/packages/{wheel_name}#sha256={digest}">{wheel_name}</a></body></html>\n')


def _write_wheel(path: Path, project: str, module: str, source: str, requires: list[str]) -> None:
    """A pure-Python wheel of one module, with the metadata and RECORD the wheel format asks."""
    info = f"{module}-1.0.dist-info"
    files = {
        f"{module}/__init__.py": source.encode(),
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n" + "".join(f"Requires-Dist: {name}\n" for name in requires)).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: boxlite tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _wait_for_port(address: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fake internet's server on {address}:{port} did not start")
        time.sleep(0.05)


@contextlib.contextmanager
def fake_internet(workdir: Path) -> Iterator[FakeInternet]:
    _teardown()
    _run("ip", "netns", "add", NAMESPACE)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        _run("ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name", FAR_LINK)
        _run("ip", "link", "set", FAR_LINK, "netns", NAMESPACE)
        _run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", HOST_LINK)
        _run("ip", "link", "set", HOST_LINK, "up")
        _run("ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.10")
        inside = ("ip", "netns", "exec", NAMESPACE)
        for address in (WEB, DNS):
            _run(*inside, "ip", "addr", "add", f"{address}/24", "dev", FAR_LINK)
        _run(*inside, "ip", "addr", "add", f"{OTHER_WEB}/24", "dev", "lo")
        _run(*inside, "ip", "link", "set", FAR_LINK, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        site = workdir / "site"
        site.mkdir(parents=True, exist_ok=True)
        (site / "index.html").write_text("hello from the fake internet\n")
        _make_package_index(site)
        for address, port in ((WEB, 80), (WEB, 8080), (OTHER_WEB, 80)):
            command = [*inside, sys.executable, "-m", "http.server", str(port), "--bind", address, "--directory", str(site)]
            servers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        net = FakeInternet(workdir)
        servers.append(subprocess.Popen([*inside, sys.executable, __file__, str(net.dns_log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        certificates = workdir / "certificates"
        certificates.mkdir(exist_ok=True)
        certificates.chmod(0o755)
        _make_certificates(certificates)
        (workdir / "authority.pem").write_bytes((certificates / "authority.pem").read_bytes())
        for address, name in ((WEB, "web"), (OTHER_WEB, "impostor")):
            https = [*inside, sys.executable, __file__, "--https", address, str(certificates / f"{name}.pem"), str(certificates / f"{name}.key"), str(workdir / f"https-{address}.log")]
            servers.append(subprocess.Popen(https, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for address in (WEB, OTHER_WEB):
            servers.append(subprocess.Popen([*inside, sys.executable, __file__, "--udp-echo", address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for address, port in ((WEB, 80), (WEB, 8080), (OTHER_WEB, 80), (WEB, 443), (OTHER_WEB, 443)):
            _wait_for_port(address, port)
        for address in (WEB, OTHER_WEB):
            _wait_for_echo(address)
        yield net
    finally:
        for server in servers:
            server.kill()
            server.wait()
        _teardown()


def _wait_for_echo(address: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.05)
        for _ in range(200):
            probe.sendto(b"?", (address, ECHO_PORT))
            with contextlib.suppress(OSError):
                if probe.recv(16) == b"?":
                    return
    raise RuntimeError(f"the fake internet's UDP echo server on {address} did not start")


def _serve_udp_echo(address: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((address, ECHO_PORT))
    while True:
        datagram, peer = server.recvfrom(65535)
        server.sendto(datagram, peer)


def _teardown() -> None:
    subprocess.run(["ip", "netns", "delete", NAMESPACE], capture_output=True)
    subprocess.run(["ip", "link", "delete", HOST_LINK], capture_output=True)


def _answer(query: bytes) -> tuple[bytes, str]:
    """The answer to one DNS query, and the name it asked for."""
    ident, _flags, count = struct.unpack("!HHH", query[:6])
    labels, offset = [], 12
    while query[offset]:
        length = query[offset]
        labels.append(query[offset + 1 : offset + 1 + length].decode("ascii").lower())
        offset += 1 + length
    question_end = offset + 5
    question = query[12:question_end]
    (qtype,) = struct.unpack("!H", query[offset + 1 : offset + 3])
    name = ".".join(labels)
    address = NAMES.get(name)
    records = b""
    answers = 0
    if address is not None and qtype == 1:
        records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
        answers = 1
    rcode = 0 if address is not None else 3
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, count, answers, 0, 0)
    return header + question + records, name


def _serve_dns(log: Path) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((DNS, 53))
    while True:
        query, peer = server.recvfrom(4096)
        with contextlib.suppress(Exception):
            answer, name = _answer(query)
            with log.open("a") as handle:
                handle.write(name + "\n")
            server.sendto(answer, peer)


def _serve_https(address: str, certificate: str, key: str, log: Path) -> None:
    """HTTPS on ``address``:443, in HTTP/2 for a client that offers it and HTTP/1.1 otherwise:
    each request is appended to ``log`` as one JSON line (its host, path, version, header names
    in lower case with their values, body and trailers); the answer is ``ok`` and never echoes
    the request. In HTTP/2, ``/bytes/N`` answers N bytes and every answer ends with the trailer
    ``x-served-over: h2``."""

    def record(entry: dict[str, object]) -> None:
        with log.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle(self) -> None:
            assert isinstance(self.request, ssl.SSLSocket)
            if self.request.selected_alpn_protocol() == "h2":
                _serve_http2(self.request, record)
            else:
                super().handle()

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            record({"host": self.headers.get("Host"), "path": self.path, "version": "HTTP/1.1", "headers": headers, "body": body.decode(errors="replace"), "trailers": {}})
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    server = http.server.ThreadingHTTPServer((address, 443), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def _serve_http2(connection: ssl.SSLSocket, record: Callable[[dict[str, object]], None]) -> None:
    """One HTTP/2 connection (the ``h2`` package's state machine over a blocking socket): each
    stream is answered once the client ended it, its body sent as the client's window allows."""
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    server.initiate_connection()
    requests: dict[int, dict[str, object]] = {}
    answers: dict[int, bytearray] = {}
    while True:
        connection.sendall(server.data_to_send())
        data = connection.recv(65536)
        if not data:
            return
        for event in server.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                fields = _fields(event.headers)
                headers = {name: value for name, value in fields.items() if not name.startswith(":")}
                requests[event.stream_id] = {"host": fields.get(":authority"), "path": fields.get(":path"), "version": "HTTP/2", "headers": headers, "body": "", "trailers": {}}
            elif isinstance(event, h2.events.DataReceived) and event.stream_id in requests:
                requests[event.stream_id]["body"] = str(requests[event.stream_id]["body"]) + (event.data or b"").decode(errors="replace")
                server.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived) and event.stream_id in requests:
                requests[event.stream_id]["trailers"] = _fields(event.headers)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in requests:
                request = requests.pop(event.stream_id)
                record(request)
                path = str(request["path"])
                answers[event.stream_id] = bytearray(b"x" * int(path.removeprefix("/bytes/")) if path.startswith("/bytes/") else b"ok\n")
                server.send_headers(event.stream_id, [(":status", "200"), ("content-length", str(len(answers[event.stream_id])))])
            elif isinstance(event, h2.events.StreamReset):
                requests.pop(event.stream_id or 0, None)
                answers.pop(event.stream_id or 0, None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                connection.sendall(server.data_to_send())
                return
        for stream_id, body in list(answers.items()):
            while body and (room := min(server.local_flow_control_window(stream_id), server.max_outbound_frame_size)) > 0:
                server.send_data(stream_id, bytes(body[:room]))
                del body[:room]
            if not body:
                server.send_headers(stream_id, [("x-served-over", "h2")], end_stream=True)
                del answers[stream_id]


def _fields(headers: Iterable[tuple[bytes | str, bytes | str]] | None) -> dict[str, str]:
    """HTTP/2 header fields as text (the ``h2`` package gives text when asked to decode)."""
    return {(name if isinstance(name, str) else name.decode()): (value if isinstance(value, str) else value.decode()) for name, value in headers or []}


def _serve_until_stopped(directory: Path) -> None:
    """Builds the fake internet in ``directory`` (readable by every user) and keeps it until
    SIGTERM or SIGINT."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)

    def stop(_signal: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with fake_internet(directory):
        (directory / "ready").touch()
        while True:
            signal.pause()


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        _serve_until_stopped(Path(sys.argv[2]))
    elif sys.argv[1] == "--udp-echo":
        _serve_udp_echo(sys.argv[2])
    elif sys.argv[1] == "--https":
        _serve_https(sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]))
    else:
        _serve_dns(Path(sys.argv[1]))
