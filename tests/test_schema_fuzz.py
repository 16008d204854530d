"""Schema-driven fuzzing with schemathesis: whatever a client sends that the OpenAPI document
describes (or, in negative mode, contradicts), the server answers without a 5xx, with a
status the document lists, a body that matches the documented schema, and errors in the one
envelope. In process (the ASGI app, with a key of every scope), on SQLite and PostgreSQL.

Each operation is a Hypothesis test built from ``schema[path][method].as_strategy()`` rather
than ``@schema.parametrize()``: the app is a per-backend fixture, and schemathesis' lazy
fixture loader (``schemathesis.pytest.from_fixture``) relies on a pytest node attribute that
pytest 9 no longer has.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from strongroom.server.apikeys import create_api_key
from strongroom.server.app import create_app
from strongroom.server.services import open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import Store

from .conftest import BACKENDS, MASTER_KEY, truncate_postgres, unsealed
from .support import ERROR_FIELDS

# Every operation of the app, so a route added without being fuzzed fails the guard below.
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/secrets"),
    ("POST", "/v1/secrets"),
    ("GET", "/v1/secrets/{name}"),
    ("PATCH", "/v1/secrets/{name}"),
    ("PUT", "/v1/secrets/{name}"),
    ("DELETE", "/v1/secrets/{name}"),
    ("GET", "/v1/secrets/{name}/versions"),
    ("POST", "/v1/secrets/{name}/restore"),
    ("POST", "/v1/secrets/{name}/rollback"),
    ("POST", "/v1/secrets/{name}/rotate"),
    ("POST", "/v1/secrets:batchGet"),
    ("PUT", "/v1/secrets:batch"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys/{key_id}"),
    ("PATCH", "/v1/keys/{key_id}"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("POST", "/v1/keys/{key_id}/rotate"),
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions/current"),
    ("DELETE", "/v1/sessions/current"),
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks/{task_id}"),
    ("DELETE", "/v1/tasks/{task_id}"),
    ("POST", "/v1/tasks/{task_id}/executions"),
    ("GET", "/v1/executions"),
    ("GET", "/v1/executions/{execution_id}"),
    ("GET", "/v1/executions/{execution_id}/steps"),
    ("POST", "/v1/executions/{execution_id}/cancel"),
    ("GET", "/julep/secrets"),
    ("POST", "/julep/secrets"),
    ("PUT", "/julep/secrets/{secret_id}"),
    ("DELETE", "/julep/secrets/{secret_id}"),
]
# Nothing in the request to contradict: negative generation has no case to make.
NOTHING_TO_NEGATE = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions/current"),
    ("DELETE", "/v1/sessions/current"),
    ("POST", "/v1/secrets/{name}/restore"),
    ("POST", "/v1/secrets/{name}/rotate"),
}
# A task's expressions, its tools' operations and arguments and the uniqueness of its output
# names are checked when it is created, beyond what JSON Schema can say: a task that matches
# the documented shape may still be refused with 422 (and is, with every problem located).
# A new key's expiry must be in the future and within the calling key's, and a rule needs
# globs or a selector: facts of the moment and of the caller, which no schema states.
SHAPE_ONLY = {("POST", "/v1/tasks"), ("POST", "/v1/keys"), ("PATCH", "/v1/keys/{key_id}")}


def versions_disagree(case: Case) -> bool:
    """An If-Match header and a body ``expected_version`` that name different versions: a
    422 by design (tests/test_api_secrets.py), across two places no schema can relate."""
    headers = {key.lower(): value for key, value in (case.headers or {}).items()}
    body = case.body if isinstance(case.body, dict) else {}
    if "if-match" not in headers or body.get("expected_version") is None:
        return False
    digits = "".join(c for c in str(headers["if-match"]) if c.isdigit()).lstrip("0")
    return digits != str(body["expected_version"])


# Facts of the moment and of the tenant: an expiry must be in the future (and name its zone),
# a rotation's task must exist and its period lie between 1m and 3650d, a batch may not
# name a secret twice, and deleted=true takes no other filter.
OF_THE_MOMENT = re.compile(
    r"body\.(secrets\[\d+\]\.)?(expires_at|policy\.allowed_destinations\[\d+\])"
    r"|body\.rotation\.(task_id|every)|body\.(names|secrets)\[\d+\]"
    r"|query\.(deleted|expiring_before)"
)


def refused_beyond_the_schema(response: Any) -> bool:
    """Two refusals of schema-valid requests, by design (tests/test_secret_policy.py).

    A policy destination the documented pattern admits (text without spaces or slashes)
    that is still no host name, IP address or ``*.domain`` with a port of 1 to 65535: that
    grammar is beyond what JSON Schema can say, and the 422 locates each such entry. And a
    read of a use-only secret (``readable: false``), which every key is refused whatever
    its scopes: a 403, though the fuzzing key holds ``*``.
    """
    if response.status_code not in (403, 422):
        return False
    error = response.json().get("error", {})
    if response.status_code == 403:
        return "is use-only" in str(error.get("message", ""))
    details = error.get("details", [])
    return bool(details) and all(OF_THE_MOMENT.fullmatch(d["location"]) for d in details)


EXAMPLES = 20  # per operation and mode: some 30 s of CPU per backend

CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            # Stricter than the default (which also admits 3xx, 429 and 5xx): schema-valid
            # data is taken, or names a thing that does not exist, a name already taken,
            # or a version that is not the current one.
            # (410: a secret whose expiry, set a moment before, has come.)
            "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409", "410", "412"]},
        },
    }
)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass
class Fuzzed:
    schema: Any  # schemathesis' OpenApiSchema, as loaded from the app's /openapi.json
    store: Store
    key: str  # of every scope

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module", params=BACKENDS)
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    """One app per backend for the whole module: opening and migrating a database for
    each of the forty-odd tests would cost more than the fuzzing."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'strongroom.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        truncate_postgres(url)
    # Rate limits off: the fuzzing sends hundreds of requests a second with one key, and a
    # 429 would be no finding (tests/test_rate_limits.py tests the budgets).
    settings = Settings(
        database_url=url,
        master_key=SecretStr(MASTER_KEY),
        rate_limit_per_key="off",
        rate_limit_per_address="off",
        rate_limit_auth_failures="off",
    )
    opened = open_services(settings)
    try:
        key, _ = create_api_key(opened.store, opened.barrier, "default")
        app = create_app(opened, run_engine=False)
        yield Fuzzed(
            schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG), opened.store, key
        )
    finally:
        opened.store.close()


def assert_envelope(status: int, body: Any) -> None:
    """The error envelope, exactly as tests/support.py's assert_error pins it."""
    assert set(body) == {"error"}, (status, body)
    assert set(body["error"]) == ERROR_FIELDS, (status, body)
    assert body["error"]["code"] and body["error"]["message"], (status, body)
    for detail in body["error"]["details"]:
        assert set(detail) == {"location", "message"}, (status, body)


def assert_value_not_echoed(case: Case, text: str) -> None:
    """An error never quotes the ``value`` a request sent (unless the request had it elsewhere
    too, e.g. as the name in the path, where an error may rightly name it)."""
    body = case.body if isinstance(case.body, dict) else {}
    value = body.get("value")
    if not isinstance(value, str) or len(value) < 6:
        return
    rest = {key: item for key, item in body.items() if key != "value"}
    elsewhere = json.dumps([rest, case.path_parameters, case.query, case.headers], default=str)
    if value in elsewhere or json.dumps(value)[1:-1] in elsewhere:
        return
    assert value not in text
    assert json.dumps(value)[1:-1] not in text


def test_every_operation_is_fuzzed(fuzzed: Fuzzed) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in fuzzed.schema.raw_schema["paths"].items()
        for method in operations
    }
    assert documented == set(OPERATIONS)


CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and (method, path) in NOTHING_TO_NEGATE)
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_answers_as_documented(
    fuzzed: Fuzzed, method: str, path: str, mode: GenerationMode
) -> None:
    auth = fuzzed.auth()
    shape_only = (method, path) in SHAPE_ONLY
    operation = fuzzed.schema[path][method]

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        # validate_response runs every check: no 5xx, a documented status, a body that
        # matches its schema, the right content type, negative data refused and
        # positive data accepted (unless excused above).
        response = case.call(headers=auth)
        excused = shape_only or versions_disagree(case) or refused_beyond_the_schema(response)
        excluded = [positive_data_acceptance] if excused else []
        case.validate_response(
            response, headers=auth, excluded_checks=excluded, transport_kwargs={"headers": auth}
        )
        if response.status_code >= 400:
            assert_envelope(response.status_code, response.json())
            assert response.headers["x-request-id"] == [response.json()["error"]["request_id"]]
            assert_value_not_echoed(case, response.text)

    run()


def test_operations_chained_by_their_links_keep_their_promises(fuzzed: Fuzzed) -> None:
    """Stateful: schemathesis links the operations by what one answers and another takes
    (a created secret's ``name`` into get, update, put, delete and versions; a task's and an
    execution's ``id`` into theirs) and runs random chains of them. Besides the checks above,
    a resource that was created can be read (ensure_resource_availability) and one that was
    deleted cannot (use_after_free).

    Only the ``/v1/secrets`` routes: among the links schemathesis infers for the rest, some
    do not hold (an audit record's ``secret_id`` is null for events about no secret, and
    is not a path to follow). And no renames: a renamed secret is gone from its old name,
    which the availability check reads as a lost resource (renames are fuzzed above). Nor
    restore and rollback: a restore after a delete succeeds, which the use-after-free check
    reads as a bug, and a rollback to a version that does not exist answers 404, which the
    availability check reads as a lost secret (both are fuzzed above, and in
    tests/test_lifecycle.py).
    Each chain runs in a tenant of its own, so it starts from nothing, as Hypothesis needs
    to replay it."""
    links = (
        fuzzed.schema.include(path_regex="^/v1/secrets")
        .exclude(path_regex="/(restore|rollback)$")
        .as_state_machine()
    )
    assert "POST /v1/secrets -> 201" in links.bundles  # the lifecycle chain exists
    auth: dict[str, str] = {}

    class Chains(links):  # type: ignore[misc,valid-type]
        def setup(self) -> None:
            key, _ = create_api_key(
                fuzzed.store, unsealed(fuzzed.store), f"chain_{uuid.uuid4().hex}"
            )
            auth["Authorization"] = f"Bearer {key}"

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": dict(auth)}

        def before_call(self, case: Case) -> None:
            if case.method.upper() == "PATCH" and isinstance(case.body, dict):
                case.body.pop("new_name", None)
                if not {"value", "description", "metadata"} & set(case.body):
                    case.body["description"] = None  # still a change: clear it

        def validate_response(
            self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            shape_only = (case.method.upper(), case.path) in SHAPE_ONLY
            excused = shape_only or versions_disagree(case) or refused_beyond_the_schema(response)
            excluded = [positive_data_acceptance] if excused else []
            case.validate_response(
                response,
                excluded_checks=excluded,
                transport_kwargs=kwargs,
                headers=dict(auth),
                recorder=getattr(self, "recorder", None),
            )
            if response.status_code >= 400:
                assert_envelope(response.status_code, response.json())

    Chains.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
