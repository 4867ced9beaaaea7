"""``boxlite serve`` against its OpenAPI description (docs/openapi.yaml), by schemathesis: for
every operation, requests made from the schema (valid ones and invalid ones) must get an answer
the schema allows — a documented status, the documented body, never a server error — and
invalid ones must be refused (4xx). Valid ones may still be refused for what a schema cannot say
(a box that does not exist, a path not in the box, an integer written as ``1.0``), so their
acceptance is not checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from hypothesis import strategies

from .serve_client import KEY, Server, serving, tar_of

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


@pytest.fixture
def served(home: Path) -> Iterator[Server]:
    with serving(home) as server:
        # Something for the generated requests to find: a running box and a stopped one.
        server.create(name="alive")
        server.ok("POST", "/v1/boxes/alive/start")
        server.create(name="resting")
        yield server


# Uploads: small well-formed tars of a few files, and bytes that are no tar at all.
schemathesis.openapi.media_type("application/x-tar", strategies.one_of(
    strategies.binary(max_size=4096),
    strategies.dictionaries(strategies.from_regex(r"[a-z]{1,8}", fullmatch=True), strategies.binary(max_size=64), max_size=3).map(tar_of),
))

SCHEMA = schemathesis.openapi.from_path(SPEC)
# Pulling makes requests to registries on the internet, which tests do not reach.
OPERATIONS = [result.ok() for result in SCHEMA.exclude(path="/v1/images/pull").get_all_operations()]


def has_inputs(operation: APIOperation) -> bool:
    """Whether there is anything to make invalid: parameters or a body."""
    return bool(operation.path_parameters or operation.query or operation.body)


CASES = [(operation, mode) for operation in OPERATIONS for mode in GenerationMode if mode is GenerationMode.POSITIVE or has_inputs(operation)]


@pytest.mark.parametrize(("operation", "mode"), CASES, ids=[f"{operation.label} {mode.value}" for operation, mode in CASES])
def test_every_answer_is_one_the_spec_allows(served: Server, operation: APIOperation, mode: GenerationMode) -> None:
    base_url, headers = f"http://{served.address}", {"Authorization": f"Bearer {KEY}"}

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(hypothesis.HealthCheck))
    def answers_as_specified(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=[schemathesis.checks.positive_data_acceptance])

    answers_as_specified()


def test_the_spec_names_every_route_of_the_server() -> None:
    """The routes in the server's code and the paths in the spec are the same set (the attach
    WebSockets aside, which OpenAPI does not describe)."""
    import re

    import yaml

    sources = (Path(__file__).resolve().parent.parent / "rust" / "server" / "src").glob("*.rs")
    routes = {re.sub(r"\{\w+\}", "{}", path) for source in sources for path in re.findall(r'\.route\("([^"]+)"', source.read_text())}
    served = {("/v1" + route) if route not in ("/v1/me", "/v1/config") else route for route in routes} - {"/v1/boxes/{}/executions/{}/attach", "/v1/boxes/{}/attach"}
    documented = {re.sub(r"\{\w+\}", "{}", path) for path in yaml.safe_load(SPEC.read_text())["paths"]}
    assert served == documented
