"""Secrets: a box's HTTPS requests carry values the box never holds (``network.secrets`` in the
core). Real traffic: curl and Python in a ``host://`` box, the fake internet's HTTPS servers
(``fake_internet``), which log what reaches them; the runtime trusts the fake internet's
authority through ``SSL_CERT_FILE``, as it would a host's own trust store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import h2
import pytest

import boxlite

from .conftest import checked_runtime, collect
from .fake_internet import DNS, OTHER_WEB, WEB, FakeInternet
from .test_network import internet  # noqa: F401  (the fake internet, one per module)
from .test_recovery import SAID

VALUE = "sk-live-0123456789abcdef"
PLACEHOLDER = "<BOXLITE_SECRET:api key>"


@pytest.fixture
def secrets_env(internet: FakeInternet, monkeypatch: pytest.MonkeyPatch) -> FakeInternet:  # noqa: F811
    """Boxes resolve the fake internet's names; the runtime (and a server it starts) trusts
    its authority."""
    monkeypatch.setenv("BOXLITE_DNS_SERVERS", DNS)
    monkeypatch.setenv("SSL_CERT_FILE", str(internet.authority))
    return internet


@pytest.fixture
async def runtime(secrets_env: FakeInternet, home: Path) -> AsyncIterator[boxlite.Boxlite]:
    async with checked_runtime(home) as rt:
        yield rt


def api_key(*hosts: str) -> boxlite.Secret:
    return boxlite.Secret("api key", VALUE, hosts=list(hosts) or ["api.secret.test"])


async def sh(box: boxlite.Box, script: str) -> tuple[int, str]:
    stdout, stderr, status = await collect(await box.exec("sh", ["-c", script]))
    return status.exit_code, (stdout + stderr).decode()


def requests_for(internet: FakeInternet, host: str, address: str = WEB) -> list[dict[str, object]]:
    return [request for request in internet.https_requests(address) if request["host"] == host]


async def test_a_secret_reaches_its_host_and_never_the_box(secrets_env: FakeInternet, any_runtime: boxlite.Boxlite) -> None:
    internet = secrets_env
    before = len(requests_for(internet, "api.secret.test"))
    box = await any_runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key()]))
    code, env = await sh(box, "env")
    assert code == 0 and f"BOXLITE_SECRET_API_KEY={PLACEHOLDER}" in env and VALUE not in env, env
    # Two requests on one connection (curl keeps it; the first with the placeholder encoded in
    # its query, as clients send it), then a POST from Python's own TLS client.
    script = 'curl -sS -H "Authorization: Bearer $BOXLITE_SECRET_API_KEY" -G --data-urlencode "key=$BOXLITE_SECRET_API_KEY" https://api.secret.test/one https://api.secret.test/two'
    code, output = await sh(box, script)
    assert (code, output) == (0, "ok\nok\n")
    post = (
        "import os, urllib.request; "
        "r = urllib.request.Request('https://api.secret.test/three', data=('body=' + os.environ['BOXLITE_SECRET_API_KEY']).encode(), "
        "headers={'X-Api-Key': os.environ['BOXLITE_SECRET_API_KEY']}); "
        "print(urllib.request.urlopen(r).read().decode(), end='')"
    )
    code, output = await sh(box, f'python3 -c "{post}"')
    assert (code, output) == (0, "ok\n")
    one, two, three = requests_for(internet, "api.secret.test")[before:]
    assert one["path"] == f"/one?key={VALUE}" and one["headers"]["authorization"] == f"Bearer {VALUE}"  # type: ignore[index]
    assert two["path"] == f"/two?key={VALUE}" and two["headers"]["authorization"] == f"Bearer {VALUE}"  # type: ignore[index]
    # Bodies go as the box wrote them: a server that echoes one cannot hand the value back.
    assert three["headers"]["x-api-key"] == VALUE and three["body"] == f"body={PLACEHOLDER}"  # type: ignore[index]
    code, verbose = await sh(box, "curl -sv -o /dev/null https://api.secret.test/four 2>&1")
    assert code == 0 and "issuer: CN=boxlite secrets authority" in verbose, verbose
    await box.stop()


async def test_the_value_is_kept_only_where_the_box_cannot_read_it(runtime: boxlite.Boxlite, home: Path) -> None:
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key()], auto_remove=False))
    code, _ = await sh(box, f"grep -r -l -F {VALUE} /etc /root /tmp; test $? -eq 1")
    assert code == 0, "the value is somewhere in the box's files"
    await box.stop()
    box_dir = home / "boxes" / box.id
    secrets_dir = box_dir / "secrets"
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    assert {path.name: path.stat().st_mode & 0o777 for path in secrets_dir.iterdir()} == {"secrets.json": 0o600, "authority.key": 0o600}
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink() and secrets_dir not in path.parents:
            assert VALUE.encode() not in path.read_bytes(), f"the value is in {path}"
    await runtime.remove(box.id)
    assert not box_dir.exists()


async def test_a_restarted_box_and_its_clone_keep_their_secrets(runtime: boxlite.Boxlite, secrets_env: FakeInternet) -> None:
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key()], auto_remove=False))
    bundle = "wc -c < /etc/ssl/certs/ca-certificates.crt"
    _, size = await sh(box, bundle)
    await box.stop()
    stopped = await runtime.get(box.id)
    assert stopped is not None
    clone = await stopped.clone_box(name="secrets-clone")
    for each in (await runtime.get(box.id), clone):
        assert each is not None
        code, output = await sh(each, 'curl -sS -H "X-Key: $BOXLITE_SECRET_API_KEY" https://api.secret.test/again')
        assert (code, output) == (0, "ok\n")
        assert requests_for(secrets_env, "api.secret.test")[-1]["headers"]["x-key"] == VALUE  # type: ignore[index]
        # The box's authority goes into its bundle once, however often it starts.
        assert await sh(each, bundle) == (0, size)
        await each.stop()
        await runtime.remove(each.id)


async def test_only_a_secrets_hosts_are_opened_and_get_its_value(runtime: boxlite.Boxlite, secrets_env: FakeInternet) -> None:
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key("api.secret.test")]))
    # Another name on the same server: relayed as it came, with the server's own certificate.
    code, verbose = await sh(box, 'curl -sSvk -H "X-Key: $BOXLITE_SECRET_API_KEY" https://plain.secret.test/plain 2>&1')
    assert code == 0 and "boxlite fake internet authority" in verbose and "boxlite secrets" not in verbose, verbose
    assert requests_for(secrets_env, "plain.secret.test")[-1]["headers"]["x-key"] == PLACEHOLDER  # type: ignore[index]
    await box.stop()


async def test_a_secrets_hosts_are_reachable_over_https_whatever_the_allow_list(runtime: boxlite.Boxlite, secrets_env: FakeInternet) -> None:
    network = boxlite.NetworkSpec(allow_net=["allowed.test"])
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, network=network, secrets=[api_key()]))
    request = 'curl -sS -H "X-Key: $BOXLITE_SECRET_API_KEY" https://api.secret.test/listed'
    assert await sh(box, request) == (0, "ok\n")
    assert requests_for(secrets_env, "api.secret.test")[-1]["headers"]["x-key"] == VALUE  # type: ignore[index]
    # Port 443 only, and the other names of the server stay out.
    code, _ = await sh(box, "curl -sS -m 5 http://api.secret.test/")
    assert code != 0
    code, _ = await sh(box, "curl -sSk -m 5 https://plain.secret.test/")
    assert code != 0
    # A new list keeps them reachable.
    await box.network.update_outbound(boxlite.OutboundNetworkSpec(allow_net=["other.test"]))
    assert await sh(box, request) == (0, "ok\n")
    await box.stop()


async def test_a_host_that_cannot_prove_its_name_never_gets_the_value(runtime: boxlite.Boxlite, secrets_env: FakeInternet) -> None:
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key("impostor.test")]))
    before = len(secrets_env.https_requests(OTHER_WEB))
    code, output = await sh(box, 'curl -sS -H "X-Key: $BOXLITE_SECRET_API_KEY" https://impostor.test/steal')
    assert code != 0, output
    assert len(secrets_env.https_requests(OTHER_WEB)) == before
    metrics = await box.metrics()
    assert metrics.network_tcp_errors is not None and metrics.network_tcp_errors >= 1
    await box.stop()


#: A gRPC-like call over HTTP/2 from the box (the ``h2`` package of the tests' own environment,
#: mounted into the box): a POST with the placeholder in a header and a trailer, its answer's
#: length and trailers printed as JSON.
HTTP2_CALL = """
import json, os, socket, ssl, sys
import h2.config, h2.connection, h2.events
context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
context.set_alpn_protocols(["h2"])
sock = context.wrap_socket(socket.create_connection(("api.secret.test", 443)), server_hostname="api.secret.test")
assert sock.selected_alpn_protocol() == "h2"
client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
client.initiate_connection()
head = [(":method", "POST"), (":scheme", "https"), (":authority", "api.secret.test"), (":path", "/call/" + sys.argv[1]),
        ("te", "trailers"), ("content-type", "application/grpc"), ("x-key", os.environ["BOXLITE_SECRET_API_KEY"])]
client.send_headers(1, head)
client.send_data(1, b"call")
client.send_headers(1, [("x-sent-trailer", os.environ["BOXLITE_SECRET_API_KEY"])], end_stream=True)
answer, trailers = 0, {}
while not trailers:
    sock.sendall(client.data_to_send())
    data = sock.recv(65536)
    if not data:
        break
    for event in client.receive_data(data):
        if isinstance(event, h2.events.DataReceived):
            answer += len(event.data)
            client.acknowledge_received_data(event.flow_controlled_length, 1)
        elif isinstance(event, h2.events.TrailersReceived):
            trailers = dict(event.headers)
print(json.dumps({"answer": answer, "trailers": trailers}))
"""


async def test_http2_streams_carry_the_value_with_bodies_and_trailers_as_written(runtime: boxlite.Boxlite, secrets_env: FakeInternet) -> None:
    """A client that offers HTTP/2 (curl does) speaks it through to the host: streams side by
    side on one connection, each with the value in place, bodies past a flow-control window
    both ways, trailers both ways (gRPC's status comes in them)."""
    h2_package = Path(h2.__file__).parent.parent
    options = boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key()], volumes=[(str(h2_package), "/opt/h2", True)], env=[("PYTHONPATH", "/opt/h2")])
    box = await runtime.create(options)
    before = len(requests_for(secrets_env, "api.secret.test"))
    side_by_side = (
        'curl -sS --http2 --parallel --parallel-immediate -w "%{http_version} %{num_connects}\\n" -H "Authorization: Bearer $BOXLITE_SECRET_API_KEY" '
        '-G --data-urlencode "key=$BOXLITE_SECRET_API_KEY" https://api.secret.test/first https://api.secret.test/second'
    )
    code, output = await sh(box, side_by_side)
    assert code == 0 and output.count("ok\n") == 2 and "2 1\n" in output, output
    upload = 'head -c 1000000 /dev/zero | tr "\\0" y > /tmp/up && curl -sS --http2 -H "X-Key: $BOXLITE_SECRET_API_KEY" --data-binary @/tmp/up https://api.secret.test/upload'
    assert await sh(box, upload) == (0, "ok\n")
    assert await sh(box, "curl -sS --http2 https://api.secret.test/bytes/3000000 | wc -c") == (0, "3000000\n")
    metrics = await box.metrics()
    assert (metrics.network_bytes_sent or 0) > 1_000_000 and (metrics.network_bytes_received or 0) > 3_000_000, metrics
    code, output = await sh(box, f"python3 -c '{HTTP2_CALL}' unary")
    assert code == 0 and json.loads(output) == {"answer": 3, "trailers": {"x-served-over": "h2"}}, output
    first, second, uploaded, downloaded, called = requests_for(secrets_env, "api.secret.test")[before:]
    assert {str(first["path"]), str(second["path"])} == {f"/first?key={VALUE}", f"/second?key={VALUE}"}
    assert all(request["version"] == "HTTP/2" for request in (first, second, uploaded, downloaded, called))
    assert first["headers"]["authorization"] == second["headers"]["authorization"] == f"Bearer {VALUE}"  # type: ignore[index]
    assert uploaded["headers"]["x-key"] == VALUE and uploaded["body"] == "y" * 1_000_000  # type: ignore[index]
    # Header values carry the value; trailers and bodies go as the box wrote them.
    assert called["headers"]["x-key"] == VALUE and called["trailers"] == {"x-sent-trailer": PLACEHOLDER} and called["body"] == "call", called  # type: ignore[index]
    code, verbose = await sh(box, "curl -sv --http2 -o /dev/null https://api.secret.test/again 2>&1")
    assert code == 0 and "ALPN: server accepted h2" in verbose and "issuer: CN=boxlite secrets authority" in verbose, verbose
    await box.stop()


async def test_a_secrets_connection_cannot_switch_protocols(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key()]))
    script = 'curl -sS --http1.1 -o /dev/null -w "%{http_code}" -H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" https://api.secret.test/socket'
    assert await sh(box, script) == (0, "403")
    await box.stop()


#: Run with the home: a box holds a connection that carries its secret while another of its
#: connections is still being made on the host; the program then forks, and the child says
#: which of its descriptors are TCP sockets of the host's to the fake internet.
FORKS_WHILE_A_BOX_CONNECTS_OUT = """
import asyncio, multiprocessing, os, socket, sys, time, boxlite

FAR = ("198.51.100.", "203.0.113.")
UNANSWERED = "198.51.100.99"  # on the fake internet's link, where nothing answers ARP

def host_tcp() -> dict[str, tuple[str, str]]:
    \"\"\"The host's TCP sockets: inode -> (peer, state), from /proc/net/tcp.\"\"\"
    sockets = {}
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        address, port = fields[2].split(":")
        peer = socket.inet_ntoa(bytes.fromhex(address)[::-1]) + ":" + str(int(port, 16))
        sockets[fields[9]] = (peer, fields[3])
    return sockets

def holdings() -> None:
    sockets = host_tcp()
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        peer = sockets.get(target[len("socket:["):-1], ("", ""))[0] if target.startswith("socket:[") else ""
        if peer.startswith(FAR):
            held.append(peer)
    print("held", *(sorted(held) or ["nothing"]), flush=True)

""" + SAID + """
BOX = f\"\"\"
import http.client, os, socket, time
held = http.client.HTTPSConnection("api.secret.test")
held.request("GET", "/held", headers={{"X-Key": os.environ["BOXLITE_SECRET_API_KEY"]}})
print(held.getresponse().read().decode().strip(), flush=True)
pending = socket.create_connection(("{UNANSWERED}", 80))
print("connecting", flush=True)
time.sleep(60)
\"\"\"

async def main() -> None:
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=sys.argv[1]))
    secret = boxlite.Secret("api key", "sk-forked-0123", hosts=["api.secret.test"])
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[secret]))
    execution = await box.exec("python3", ["-c", BOX])
    await said(execution, "connecting")
    # The runtime's own connect for the box's second connection: SYN_SENT (02) until the
    # link's ARP gives up, about 3 s.
    deadline = time.monotonic() + 2
    while (UNANSWERED + ":80", "02") not in host_tcp().values():
        assert time.monotonic() < deadline, "the runtime never tried the box's connection"
        await asyncio.sleep(0.01)
    child = multiprocessing.get_context("fork").Process(target=holdings)
    child.start()
    child.join()
    await runtime.remove(box.id, force=True)
    runtime.close()

asyncio.run(main())
"""


async def test_a_forked_child_holds_none_of_the_hosts_ends_of_a_boxs_connections(secrets_env: FakeInternet, home: Path) -> None:
    """The connections the runtime makes on the host for a box are its process's alone from
    their making: a child forked (multiprocessing's ``fork``) while one is still being made,
    or while one carries the box's secrets, holds neither, so the destination sees the
    connection end when the box's does, whatever the child's life."""
    result = subprocess.run([sys.executable, "-c", FORKS_WHILE_A_BOX_CONNECTS_OUT, str(home)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["held", "nothing"], result.stdout


@pytest.mark.parametrize(
    ("secret", "network", "named"),
    [
        (boxlite.Secret("api key", VALUE, hosts=[]), None, "names no hosts"),
        (boxlite.Secret("api key", VALUE, hosts=["not a host"]), None, "not a host"),
        (boxlite.Secret("api key", VALUE + "\r\nX-Injected: 1", hosts=["api.secret.test"]), None, "line breaks"),
        (boxlite.Secret("api key", VALUE, hosts=["api.secret.test"], placeholder=""), None, "placeholder is empty"),
        (api_key(), boxlite.NetworkSpec(mode="disabled"), "has none"),
    ],
)
async def test_bad_secrets_are_refused_by_name_and_leave_nothing(runtime: boxlite.Boxlite, home: Path, secret: boxlite.Secret, network: boxlite.NetworkSpec | None, named: str) -> None:
    with pytest.raises(boxlite.InvalidArgumentError) as raised:
        await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[secret], network=network))
    assert named in str(raised.value) and VALUE not in str(raised.value)
    assert not (home / "boxes").exists() or not any((home / "boxes").iterdir())
    assert VALUE not in repr(secret)
