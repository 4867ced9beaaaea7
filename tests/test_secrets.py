"""Secrets: a box's HTTPS requests carry values the box never holds (``network.secrets`` in the
core). Real traffic: curl and Python in a ``host://`` box, the fake internet's HTTPS servers
(``fake_internet``), which log what reaches them; the runtime trusts the fake internet's
authority through ``SSL_CERT_FILE``, as it would a host's own trust store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import boxlite

from .conftest import checked_runtime, collect
from .fake_internet import DNS, OTHER_WEB, WEB, FakeInternet
from .test_network import internet  # noqa: F401  (the fake internet, one per module)

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
    assert one["path"] == f"/one?key={VALUE}" and one["headers"]["Authorization"] == f"Bearer {VALUE}"  # type: ignore[index]
    assert two["path"] == f"/two?key={VALUE}" and two["headers"]["Authorization"] == f"Bearer {VALUE}"  # type: ignore[index]
    # Bodies go as the box wrote them: a server that echoes one cannot hand the value back.
    assert three["headers"]["X-Api-Key"] == VALUE and three["body"] == f"body={PLACEHOLDER}"  # type: ignore[index]
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
        assert requests_for(secrets_env, "api.secret.test")[-1]["headers"]["X-Key"] == VALUE  # type: ignore[index]
        # The box's authority goes into its bundle once, however often it starts.
        assert await sh(each, bundle) == (0, size)
        await each.stop()
        await runtime.remove(each.id)


async def test_only_a_secrets_hosts_are_opened_and_get_its_value(runtime: boxlite.Boxlite, secrets_env: FakeInternet) -> None:
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key("api.secret.test")]))
    # Another name on the same server: relayed as it came, with the server's own certificate.
    code, verbose = await sh(box, 'curl -sSvk -H "X-Key: $BOXLITE_SECRET_API_KEY" https://plain.secret.test/plain 2>&1')
    assert code == 0 and "boxlite fake internet authority" in verbose and "boxlite secrets" not in verbose, verbose
    assert requests_for(secrets_env, "plain.secret.test")[-1]["headers"]["X-Key"] == PLACEHOLDER  # type: ignore[index]
    await box.stop()


async def test_a_secrets_hosts_are_reachable_over_https_whatever_the_allow_list(runtime: boxlite.Boxlite, secrets_env: FakeInternet) -> None:
    network = boxlite.NetworkSpec(allow_net=["allowed.test"])
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, network=network, secrets=[api_key()]))
    request = 'curl -sS -H "X-Key: $BOXLITE_SECRET_API_KEY" https://api.secret.test/listed'
    assert await sh(box, request) == (0, "ok\n")
    assert requests_for(secrets_env, "api.secret.test")[-1]["headers"]["X-Key"] == VALUE  # type: ignore[index]
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


async def test_a_secrets_connection_cannot_switch_protocols(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, secrets=[api_key()]))
    script = 'curl -sS -o /dev/null -w "%{http_code}" -H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" https://api.secret.test/socket'
    assert await sh(box, script) == (0, "403")
    await box.stop()


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
