"""Contract tests of ``/v1/secrets`` and ``/v1/audit``, in process, on SQLite and PostgreSQL.

Each test states one promise of the wire contract (api-contract.md, "Conventions" and
"Secrets"): the answer's status and shape, what a call changes and what it leaves alone.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from strongroom.server.apikeys import create_api_key
from strongroom.server.services import Services

from .conftest import ClientWith, MakeClient
from .support import assert_error, canary

SECRET_FIELDS = {
    "id",
    "name",
    "description",
    "metadata",
    "value",
    "version",
    "created_at",
    "updated_at",
    "policy",
    "expires_at",
    "rotation",
    "last_rotated_at",
    "next_rotation_at",
    "deleted_at",
    "purge_after",
}
AUDIT_FIELDS = {
    "id",
    "time",
    "key_id",
    "key_name",
    "action",
    "outcome",
    "secret_name",
    "secret_id",
    "request_id",
    "client_addr",
    "detail",
}
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
KIB = 1024


# -- helpers ----------------------------------------------------------------------------------
def create(api: TestClient, name: str, value: str = "v", **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/secrets", json={"name": name, "value": value, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get(api: TestClient, name: str, **params: Any) -> dict[str, Any]:
    response = api.get(f"/v1/secrets/{name}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def names(api: TestClient, **params: Any) -> list[str]:
    response = api.get("/v1/secrets", params=params)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def timestamp(text: str) -> dt.datetime:
    """An RFC 3339 UTC timestamp spelled with ``Z``, close to now (so truly UTC)."""
    assert RFC3339_UTC.fullmatch(text), text
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - parsed) < dt.timedelta(minutes=10), text
    return parsed


def assert_secret(body: dict[str, Any], name: str, value: str = "ENCRYPTED") -> None:
    assert set(body) == SECRET_FIELDS, body
    assert body["name"] == name
    assert body["value"] == value
    assert uuid.UUID(body["id"])
    assert isinstance(body["version"], int)
    assert body["version"] >= 1
    assert isinstance(body["metadata"], dict)
    assert timestamp(body["updated_at"]) >= timestamp(body["created_at"])


def audit(api: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.fixture
def small_api(client_with: ClientWith) -> TestClient:
    """A client of an app whose values hold at most 16 bytes and bodies 1 KiB."""
    return client_with(max_value_bytes=16, max_body_bytes=1024)


# -- create -----------------------------------------------------------------------------------
def test_create_answers_201_with_the_secret_and_never_the_value(api: TestClient) -> None:
    value = canary()
    response = api.post(
        "/v1/secrets",
        json={
            "name": "stripe_api_key",
            "value": value,
            "description": "Stripe API key for payment processing",
            "metadata": {"environment": "production", "owner": "payments-team"},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert_secret(body, "stripe_api_key")
    assert body["version"] == 1
    assert body["description"] == "Stripe API key for payment processing"
    assert body["metadata"] == {"environment": "production", "owner": "payments-team"}
    assert body["created_at"] == body["updated_at"]
    assert value not in response.text
    assert response.headers["x-request-id"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")


def test_create_without_optional_fields_has_no_description_and_empty_metadata(
    api: TestClient,
) -> None:
    body = create(api, "bare")
    assert body["description"] is None
    assert body["metadata"] == {}


def test_created_value_is_what_get_returns(api: TestClient) -> None:
    value = canary()
    create(api, "db_password", value)
    assert get(api, "db_password")["value"] == value


def test_create_twice_is_a_conflict_and_keeps_the_first_value(api: TestClient) -> None:
    create(api, "existing_secret", "first")
    response = api.post("/v1/secrets", json={"name": "existing_secret", "value": "second"})
    error = assert_error(response, 409, "conflict")
    assert "'existing_secret'" in error["message"]
    assert "second" not in response.text
    secret = get(api, "existing_secret")
    assert (secret["value"], secret["version"]) == ("first", 1)


def test_names_are_case_sensitive(api: TestClient) -> None:
    create(api, "token", "lower")
    create(api, "Token", "upper")
    assert get(api, "token")["value"] == "lower"
    assert get(api, "Token")["value"] == "upper"


@pytest.mark.parametrize("name", ["a", "_", "_private", "A1_b2", "x" * 128, "ABC"])
def test_valid_identifiers_are_accepted_as_names(api: TestClient, name: str) -> None:
    assert create(api, name)["name"] == name
    assert get(api, name)["value"] == "v"


@pytest.mark.parametrize(
    "name",
    ["invalid name", "1abc", "a" * 129, "", "dash-ed", "dot.ted", "caf\u00e9", "a/b", " lead"],
)
def test_invalid_names_are_refused_with_body_name(api: TestClient, name: str) -> None:
    response = api.post("/v1/secrets", json={"name": name, "value": "test"})
    assert_error(response, 422, "validation_error", "body.name")
    assert names(api) == []


def test_empty_value_is_refused(api: TestClient) -> None:
    response = api.post("/v1/secrets", json={"name": "empty", "value": ""})
    assert_error(response, 422, "validation_error", "body.value")


def test_null_value_is_refused(api: TestClient) -> None:
    response = api.post("/v1/secrets", json={"name": "nothing", "value": None})
    assert_error(response, 422, "validation_error", "body.value")


def test_default_value_limit_is_64_kib(api: TestClient) -> None:
    create(api, "at_limit", "x" * (64 * KIB))
    assert len(get(api, "at_limit")["value"]) == 64 * KIB
    over = "y" * (64 * KIB + 1)
    response = api.post("/v1/secrets", json={"name": "over_limit", "value": over})
    error = assert_error(response, 422, "validation_error", "body.value")
    assert str(64 * KIB) in error["message"]
    assert "yyyyyyyy" not in response.text
    assert names(api) == ["at_limit"]


def test_value_limit_is_configurable_and_counts_utf8_bytes(small_api: TestClient) -> None:
    create(small_api, "sixteen", "x" * 16)
    create(small_api, "eight_e_acute", "\u00e9" * 8)  # 8 characters, 16 bytes
    # nine characters, but eighteen bytes: over a 16-byte limit
    response = small_api.post("/v1/secrets", json={"name": "nine", "value": "\u00e9" * 9})
    error = assert_error(response, 422, "validation_error", "body.value")
    assert "18 bytes" in error["message"]
    assert "16" in error["message"]
    response = small_api.post("/v1/secrets", json={"name": "seventeen", "value": "x" * 17})
    assert_error(response, 422, "validation_error", "body.value")
    assert names(small_api) == ["eight_e_acute", "sixteen"]


def test_value_limit_applies_to_update_and_upsert(small_api: TestClient) -> None:
    create(small_api, "small", "fits")
    response = small_api.patch("/v1/secrets/small", json={"value": "z" * 17})
    assert_error(response, 422, "validation_error", "body.value")
    response = small_api.put("/v1/secrets/small", json={"value": "z" * 17})
    assert_error(response, 422, "validation_error", "body.value")
    response = small_api.put("/v1/secrets/other", json={"value": "z" * 17})
    assert_error(response, 422, "validation_error", "body.value")
    secret = get(small_api, "small")
    assert (secret["value"], secret["version"]) == ("fits", 1)
    assert names(small_api) == ["small"]


def test_value_must_be_valid_unicode(api: TestClient) -> None:
    body = b'{"name": "surrogate", "value": "\\ud800"}'
    response = api.post("/v1/secrets", content=body, headers={"content-type": "application/json"})
    assert_error(response, 422, "validation_error", "body.value")
    assert names(api) == []


def test_description_is_limited_to_1000_characters(api: TestClient) -> None:
    assert create(api, "long_ok", description="d" * 1000)["description"] == "d" * 1000
    response = api.post(
        "/v1/secrets", json={"name": "too_long", "value": "v", "description": "d" * 1001}
    )
    assert_error(response, 422, "validation_error", "body.description")
    assert names(api) == ["long_ok"]


def test_metadata_is_limited_to_64_keys(api: TestClient) -> None:
    keys64 = {f"k{i}": "v" for i in range(64)}
    assert create(api, "many", metadata=keys64)["metadata"] == keys64
    keys65 = {f"k{i}": "v" for i in range(65)}
    response = api.post("/v1/secrets", json={"name": "too_many", "value": "v", "metadata": keys65})
    error = assert_error(response, 422, "validation_error", "body.metadata")
    assert "65" in error["message"]
    assert names(api) == ["many"]


def test_metadata_is_limited_to_16_kib_serialized(api: TestClient) -> None:
    overhead = len(json.dumps({"k": ""}, separators=(",", ":")))
    at_limit = {"k": "m" * (16 * KIB - overhead)}
    assert create(api, "big_ok", metadata=at_limit)["metadata"] == at_limit
    over = {"k": "m" * (16 * KIB - overhead + 1)}
    response = api.post("/v1/secrets", json={"name": "too_big", "value": "v", "metadata": over})
    assert_error(response, 422, "validation_error", "body.metadata")
    assert names(api) == ["big_ok"]


def test_unknown_field_is_refused(api: TestClient) -> None:
    response = api.post("/v1/secrets", json={"name": "x", "value": "v", "colour": "blue"})
    assert_error(response, 422, "validation_error", "body.colour")
    assert names(api) == []


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("name", 5),
        ("name", None),
        ("value", 5),
        ("value", ["v"]),
        ("description", 5),
        ("metadata", "x"),
        ("metadata", [1, 2]),
        ("metadata", 3),
    ],
)
def test_wrong_types_are_refused_at_their_field(api: TestClient, field: str, bad: Any) -> None:
    body = {"name": "typed", "value": "v", field: bad}
    response = api.post("/v1/secrets", json=body)
    error = assert_error(response, 422, "validation_error", f"body.{field}")
    assert [d["location"] for d in error["details"]] == [f"body.{field}"]
    assert names(api) == []


def test_missing_required_fields_are_each_reported(api: TestClient) -> None:
    response = api.post("/v1/secrets", json={})
    error = assert_error(response, 422, "validation_error")
    assert sorted(d["location"] for d in error["details"]) == ["body.name", "body.value"]


def test_several_bad_fields_give_one_detail_per_field(api: TestClient) -> None:
    response = api.post(
        "/v1/secrets",
        json={
            "name": "invalid name",
            "value": "",
            "description": "d" * 1001,
            "metadata": {f"k{i}": i for i in range(65)},
            "extra": True,
        },
    )
    error = assert_error(response, 422, "validation_error")
    assert sorted(d["location"] for d in error["details"]) == [
        "body.description",
        "body.extra",
        "body.metadata",
        "body.name",
        "body.value",
    ]
    assert "(and 4 more)" in error["message"]
    assert names(api) == []


# -- list -------------------------------------------------------------------------------------
def test_list_orders_by_name_in_code_point_order(api: TestClient) -> None:
    for name in ["b", "a", "B", "_x", "A1", "Z", "aa"]:
        create(api, name)
    # upper case, then "_", then lower case: code points, not a locale's collation
    assert names(api) == ["A1", "B", "Z", "_x", "a", "aa", "b"]


def test_list_shows_every_value_as_encrypted(api: TestClient) -> None:
    values = [canary() for _ in range(3)]
    for i, value in enumerate(values):
        create(api, f"s{i}", value, metadata={"i": i})
    response = api.get("/v1/secrets")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "limit", "offset", "has_more"}
    assert (body["limit"], body["offset"], body["has_more"]) == (100, 0, False)
    for item in body["items"]:
        assert_secret(item, item["name"])
    assert [item["metadata"] for item in body["items"]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    for value in values:
        assert value not in response.text
    assert response.headers["cache-control"] == "no-store"


def test_list_of_no_secrets_is_empty(api: TestClient) -> None:
    response = api.get("/v1/secrets")
    assert response.status_code == 200
    assert response.json() == {"items": [], "limit": 100, "offset": 0, "has_more": False}


def test_list_pages_with_limit_offset_and_has_more(api: TestClient) -> None:
    for name in ["e", "c", "a", "d", "b"]:
        create(api, name)
    pages = []
    for offset in (0, 2, 4):
        response = api.get("/v1/secrets", params={"limit": 2, "offset": offset})
        assert response.status_code == 200
        body = response.json()
        assert (body["limit"], body["offset"]) == (2, offset)
        pages.append(([i["name"] for i in body["items"]], body["has_more"]))
    assert pages == [(["a", "b"], True), (["c", "d"], True), (["e"], False)]
    # exactly at the end: nothing more
    response = api.get("/v1/secrets", params={"limit": 5})
    assert response.json()["has_more"] is False
    response = api.get("/v1/secrets", params={"limit": 4})
    assert response.json()["has_more"] is True
    # past the end: an empty page
    response = api.get("/v1/secrets", params={"limit": 2, "offset": 10})
    assert response.json() == {"items": [], "limit": 2, "offset": 10, "has_more": False}


def test_list_limit_bounds_are_1_and_1000(api: TestClient) -> None:
    create(api, "one")
    assert api.get("/v1/secrets", params={"limit": 1}).status_code == 200
    response = api.get("/v1/secrets", params={"limit": 1000})
    assert response.status_code == 200
    assert response.json()["limit"] == 1000


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"limit": -1}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"offset": "x"}, "query.offset"),
    ],
)
def test_list_refuses_bad_paging(api: TestClient, params: dict[str, Any], location: str) -> None:
    response = api.get("/v1/secrets", params=params)
    assert_error(response, 422, "validation_error", location)


@pytest.fixture
def tagged(api: TestClient) -> TestClient:
    """Secrets with assorted metadata, for the filter tests."""
    create(api, "stripe", metadata={"environment": "production", "owner": "payments-team"})
    create(api, "stripe_test", metadata={"environment": "staging", "owner": "payments-team"})
    create(api, "db", metadata={"environment": "production", "owner": "data"})
    create(api, "bare")
    create(
        api,
        "typed",
        metadata={
            "port": 5432,
            "ratio": 0.5,
            "enabled": True,
            "nothing": None,
            "tags": ["a", "b"],
            "nested": {"x": 1, "y": {"z": "deep"}},
            "number_text": "1",
        },
    )
    create(api, "one_int", metadata={"n": 1})
    create(api, "flag_true", metadata={"n": True})
    create(api, "one_text", metadata={"n": "1"})
    return api


def test_metadata_filter_as_json(tagged: TestClient) -> None:
    found = names(tagged, metadata=json.dumps({"environment": "production"}))
    assert found == ["db", "stripe"]


def test_metadata_filter_with_several_keys_needs_all_of_them(tagged: TestClient) -> None:
    both = {"environment": "production", "owner": "payments-team"}
    assert names(tagged, metadata=json.dumps(both)) == ["stripe"]
    assert names(tagged, metadata=json.dumps({"owner": "payments-team"})) == [
        "stripe",
        "stripe_test",
    ]
    # a key no secret has, beside one that matches: nothing
    assert names(tagged, metadata=json.dumps({**both, "rotated": "2025-05-10"})) == []
    assert names(tagged, metadata=json.dumps({"environment": "nowhere"})) == []


def test_metadata_filter_in_bracket_form(tagged: TestClient) -> None:
    assert names(tagged, **{"metadata[environment]": "production"}) == ["db", "stripe"]
    two = {"metadata[environment]": "production", "metadata[owner]": "payments-team"}
    assert names(tagged, **two) == ["stripe"]
    # the bracket form carries strings: "1", not the number 1
    assert names(tagged, **{"metadata[n]": "1"}) == ["one_text"]


def test_metadata_filter_matches_json_values_exactly(tagged: TestClient) -> None:
    def match(filter_: dict[str, Any]) -> list[str]:
        return names(tagged, metadata=json.dumps(filter_))

    assert match({"port": 5432}) == ["typed"]
    assert match({"port": "5432"}) == []
    assert match({"ratio": 0.5}) == ["typed"]
    assert match({"enabled": True}) == ["typed"]
    assert match({"enabled": "true"}) == []
    assert match({"nothing": None}) == ["typed"]
    assert match({"tags": ["a", "b"]}) == ["typed"]
    assert match({"tags": ["b", "a"]}) == []
    # nested objects compare whole, whatever the key order
    assert match({"nested": {"y": {"z": "deep"}, "x": 1}}) == ["typed"]
    # containment is at the top level only: part of a nested object is no match
    assert match({"nested": {"x": 1}}) == []
    # a number, a boolean and a string are different values
    assert match({"n": 1}) == ["one_int"]
    assert match({"n": True}) == ["flag_true"]
    assert match({"n": "1"}) == ["one_text"]
    assert match({"number_text": "1", "port": 5432, "enabled": True}) == ["typed"]


def test_metadata_filter_treats_1_and_1_point_0_as_the_same_number(api: TestClient) -> None:
    # JSON has one number type; a JavaScript client cannot even send 1.0
    create(api, "float_one", metadata={"n": 1.0, "deep": {"m": 2.0}})
    create(api, "int_one", metadata={"n": 1, "deep": {"m": 2}})
    assert names(api, metadata='{"n": 1}') == ["float_one", "int_one"]
    assert names(api, metadata='{"n": 1.0}') == ["float_one", "int_one"]
    assert names(api, metadata='{"deep": {"m": 2}}') == ["float_one", "int_one"]
    assert names(api, metadata='{"n": 1.5}') == []


def test_empty_metadata_filter_matches_everything(tagged: TestClient) -> None:
    assert names(tagged, metadata="{}") == names(tagged)


def test_metadata_filter_pages(api: TestClient) -> None:
    for name in ["p3", "p1", "x", "p2"]:
        create(api, name, metadata={"group": "x" if name == "x" else "p"})
    response = api.get("/v1/secrets", params={"metadata": '{"group": "p"}', "limit": 2})
    body = response.json()
    assert ([i["name"] for i in body["items"]], body["has_more"]) == (["p1", "p2"], True)
    response = api.get(
        "/v1/secrets", params={"metadata": '{"group": "p"}', "limit": 2, "offset": 2}
    )
    body = response.json()
    assert ([i["name"] for i in body["items"]], body["has_more"]) == (["p3"], False)


def test_metadata_filter_follows_updates_renames_and_deletes(api: TestClient) -> None:
    create(api, "first", metadata={"env": "prod"})
    create(api, "second", metadata={"env": "prod"})
    prod = json.dumps({"env": "prod"})
    assert names(api, metadata=prod) == ["first", "second"]
    api.patch("/v1/secrets/first", json={"metadata": {"env": "dev"}}).raise_for_status()
    assert names(api, metadata=prod) == ["second"]
    assert names(api, metadata='{"env": "dev"}') == ["first"]
    api.patch("/v1/secrets/second", json={"new_name": "a_second"}).raise_for_status()
    assert names(api, metadata=prod) == ["a_second"]
    api.delete("/v1/secrets/a_second").raise_for_status()
    assert names(api, metadata=prod) == []


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", '"production"', "42", "null", "", "{"])
def test_bad_metadata_filter_is_refused(api: TestClient, bad: str) -> None:
    response = api.get("/v1/secrets", params={"metadata": bad})
    assert_error(response, 422, "validation_error", "query.metadata")


# -- get --------------------------------------------------------------------------------------
def test_get_returns_the_plaintext_and_forbids_caching(api: TestClient) -> None:
    value = canary()
    created = create(api, "stripe_api_key", value, description="d", metadata={"k": "v"})
    response = api.get("/v1/secrets/stripe_api_key")
    assert response.status_code == 200
    body = response.json()
    assert_secret(body, "stripe_api_key", value)
    assert {k: body[k] for k in SECRET_FIELDS - {"value"}} == {
        k: created[k] for k in SECRET_FIELDS - {"value"}
    }
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["etag"] == '"1"'
    assert response.headers["x-request-id"]


def test_get_an_older_version(api: TestClient) -> None:
    create(api, "rotating", "one")
    api.patch("/v1/secrets/rotating", json={"value": "two"}).raise_for_status()
    api.patch("/v1/secrets/rotating", json={"value": "three"}).raise_for_status()
    latest = get(api, "rotating")
    assert (latest["value"], latest["version"]) == ("three", 3)
    for version, value in [(1, "one"), (2, "two"), (3, "three")]:
        secret = get(api, "rotating", version=version)
        assert (secret["value"], secret["version"]) == (value, version)


def test_get_an_unknown_version_is_not_found(api: TestClient) -> None:
    create(api, "single")
    response = api.get("/v1/secrets/single", params={"version": 2})
    error = assert_error(response, 404, "not_found")
    assert "'single'" in error["message"]
    assert "2" in error["message"]


@pytest.mark.parametrize("version", ["0", "-1", "one"])
def test_get_with_a_bad_version_is_refused(api: TestClient, version: str) -> None:
    create(api, "single")
    response = api.get("/v1/secrets/single", params={"version": version})
    assert_error(response, 422, "validation_error", "query.version")


def test_get_unknown_name_is_not_found_naming_the_secret(api: TestClient) -> None:
    response = api.get("/v1/secrets/non_existent_secret")
    error = assert_error(response, 404, "not_found")
    assert error["message"] == "secret 'non_existent_secret' does not exist"
    assert error["details"] == []


@pytest.mark.parametrize("path_name", ["1abc", "a" * 129, "bad%20name", "dash-ed", "caf%C3%A9"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_invalid_name_in_the_path_is_refused_with_path_name(
    api: TestClient, method: str, path_name: str
) -> None:
    body = None if method in ("GET", "DELETE") else {"value": "v"}
    response = api.request(method, f"/v1/secrets/{path_name}", json=body)
    assert_error(response, 422, "validation_error", "path.name")
    assert names(api) == []


def test_invalid_name_in_the_versions_path_is_refused(api: TestClient) -> None:
    response = api.get("/v1/secrets/9lives/versions")
    assert_error(response, 422, "validation_error", "path.name")


def test_get_etag_follows_the_version(api: TestClient) -> None:
    create(api, "tagged_secret")
    api.patch("/v1/secrets/tagged_secret", json={"value": "new"}).raise_for_status()
    assert api.get("/v1/secrets/tagged_secret").headers["etag"] == '"2"'


# -- update (PATCH) ---------------------------------------------------------------------------
def test_update_only_the_description(api: TestClient) -> None:
    created = create(api, "partial", "keep-me", description="old", metadata={"a": "1"})
    response = api.patch("/v1/secrets/partial", json={"description": "new"})
    assert response.status_code == 200
    body = response.json()
    assert_secret(body, "partial")
    assert body["description"] == "new"
    assert body["metadata"] == {"a": "1"}
    assert body["version"] == 1
    assert body["id"] == created["id"]
    assert body["created_at"] == created["created_at"]
    assert response.headers["cache-control"] == "no-store"
    secret = get(api, "partial")
    assert (secret["value"], secret["version"], secret["description"]) == ("keep-me", 1, "new")


def test_update_only_the_metadata_replaces_the_whole_object(api: TestClient) -> None:
    create(api, "meta", "keep-me", description="kept", metadata={"a": "1", "b": "2"})
    response = api.patch("/v1/secrets/meta", json={"metadata": {"lastRotated": "2025-05-10"}})
    assert response.status_code == 200
    body = response.json()
    assert body["metadata"] == {"lastRotated": "2025-05-10"}
    assert body["description"] == "kept"
    assert body["version"] == 1
    secret = get(api, "meta")
    assert secret["value"] == "keep-me"
    assert secret["metadata"] == {"lastRotated": "2025-05-10"}


def test_update_with_empty_metadata_clears_it(api: TestClient) -> None:
    create(api, "meta", metadata={"a": "1"})
    assert api.patch("/v1/secrets/meta", json={"metadata": {}}).json()["metadata"] == {}
    assert get(api, "meta")["metadata"] == {}


def test_update_description_null_clears_it(api: TestClient) -> None:
    create(api, "described", description="something")
    response = api.patch("/v1/secrets/described", json={"description": None})
    assert response.status_code == 200
    assert response.json()["description"] is None
    assert get(api, "described")["description"] is None


def test_update_value_makes_a_new_version(api: TestClient) -> None:
    old, new = canary("old"), canary("new")
    created = create(api, "stripe_api_key", old, description="d", metadata={"k": "v"})
    response = api.patch("/v1/secrets/stripe_api_key", json={"value": new})
    assert response.status_code == 200
    body = response.json()
    assert_secret(body, "stripe_api_key")  # the answer says "ENCRYPTED", not the value
    assert new not in response.text
    assert body["version"] == 2
    assert (body["description"], body["metadata"]) == ("d", {"k": "v"})
    assert body["created_at"] == created["created_at"]
    assert timestamp(body["updated_at"]) >= timestamp(created["updated_at"])
    assert get(api, "stripe_api_key")["value"] == new
    assert get(api, "stripe_api_key", version=1)["value"] == old


def test_update_every_field_at_once(api: TestClient) -> None:
    create(api, "stripe_api_key", "sk_test_old")
    response = api.patch(
        "/v1/secrets/stripe_api_key",
        json={
            "value": "sk_test_new_value",
            "description": "Updated Stripe API key",
            "metadata": {"environment": "production", "rotated": "2025-05-10"},
        },
    )
    assert response.status_code == 200
    secret = get(api, "stripe_api_key")
    assert secret["value"] == "sk_test_new_value"
    assert secret["version"] == 2
    assert secret["description"] == "Updated Stripe API key"
    assert secret["metadata"] == {"environment": "production", "rotated": "2025-05-10"}


def test_rename_moves_the_secret_and_frees_the_old_name(api: TestClient) -> None:
    created = create(api, "old_name", "the-value", description="d", metadata={"k": "v"})
    api.patch("/v1/secrets/old_name", json={"value": "second"}).raise_for_status()
    response = api.patch("/v1/secrets/old_name", json={"new_name": "new_name"})
    assert response.status_code == 200
    body = response.json()
    assert_secret(body, "new_name")
    assert body["id"] == created["id"]
    assert (body["version"], body["description"], body["metadata"]) == (2, "d", {"k": "v"})
    assert_error(api.get("/v1/secrets/old_name"), 404, "not_found")
    assert_error(api.get("/v1/secrets/old_name/versions"), 404, "not_found")
    renamed = get(api, "new_name")
    assert (renamed["value"], renamed["version"]) == ("second", 2)
    assert get(api, "new_name", version=1)["value"] == "the-value"
    assert names(api) == ["new_name"]
    # the old name is free at once
    again = create(api, "old_name", "fresh")
    assert again["version"] == 1
    assert again["id"] != created["id"]
    assert get(api, "old_name")["value"] == "fresh"
    assert get(api, "new_name")["value"] == "second"


def test_rename_and_change_value_together(api: TestClient) -> None:
    create(api, "before", "v1")
    response = api.patch("/v1/secrets/before", json={"new_name": "after", "value": "v2"})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["version"]) == ("after", 2)
    assert get(api, "after")["value"] == "v2"
    assert_error(api.get("/v1/secrets/before"), 404, "not_found")


def test_rename_onto_a_taken_name_is_a_conflict(api: TestClient) -> None:
    create(api, "source", "source-value")
    create(api, "target", "target-value")
    response = api.patch("/v1/secrets/source", json={"new_name": "target", "value": "changed"})
    error = assert_error(response, 409, "conflict")
    assert "'target'" in error["message"]
    # nothing moved, nothing changed
    source, target = get(api, "source"), get(api, "target")
    assert (source["value"], source["version"]) == ("source-value", 1)
    assert (target["value"], target["version"]) == ("target-value", 1)


def test_rename_onto_its_own_name_is_no_conflict(api: TestClient) -> None:
    create(api, "same", "v")
    response = api.patch("/v1/secrets/same", json={"new_name": "same", "description": "d"})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["description"]) == ("same", "d")


def test_rename_to_an_invalid_name_is_refused(api: TestClient) -> None:
    create(api, "valid")
    response = api.patch("/v1/secrets/valid", json={"new_name": "not valid"})
    assert_error(response, 422, "validation_error", "body.new_name")
    assert names(api) == ["valid"]


def test_conditional_update_with_expected_version(api: TestClient) -> None:
    create(api, "guarded", "v1")
    response = api.patch("/v1/secrets/guarded", json={"value": "v2", "expected_version": 1})
    assert response.status_code == 200
    assert response.json()["version"] == 2
    stale = api.patch("/v1/secrets/guarded", json={"value": "v3", "expected_version": 1})
    error = assert_error(stale, 412, "precondition_failed")
    assert "'guarded'" in error["message"]
    assert "v3" not in stale.text
    secret = get(api, "guarded")
    assert (secret["value"], secret["version"]) == ("v2", 2)


def test_conditional_update_with_if_match(api: TestClient) -> None:
    create(api, "guarded", "v1")
    etag = api.get("/v1/secrets/guarded").headers["etag"]
    response = api.patch("/v1/secrets/guarded", json={"value": "v2"}, headers={"If-Match": etag})
    assert response.status_code == 200
    # the ETag read before the change no longer matches
    stale = api.patch("/v1/secrets/guarded", json={"value": "v3"}, headers={"If-Match": etag})
    assert_error(stale, 412, "precondition_failed")
    stale = api.patch("/v1/secrets/guarded", json={"description": "x"}, headers={"If-Match": '"7"'})
    assert_error(stale, 412, "precondition_failed")
    secret = get(api, "guarded")
    assert (secret["value"], secret["version"], secret["description"]) == ("v2", 2, None)
    # a weak tag names the same version
    weak = api.patch("/v1/secrets/guarded", json={"value": "v3"}, headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 200
    assert weak.json()["version"] == 3


def test_conditional_rename_fails_on_a_stale_version(api: TestClient) -> None:
    create(api, "guarded")
    response = api.patch("/v1/secrets/guarded", json={"new_name": "moved", "expected_version": 2})
    assert_error(response, 412, "precondition_failed")
    assert names(api) == ["guarded"]


def test_if_match_and_expected_version_must_agree(api: TestClient) -> None:
    create(api, "guarded", "v1")
    response = api.patch(
        "/v1/secrets/guarded",
        json={"value": "v2", "expected_version": 1},
        headers={"If-Match": '"2"'},
    )
    assert_error(response, 422, "validation_error", "header.if-match")
    agreeing = api.patch(
        "/v1/secrets/guarded",
        json={"value": "v2", "expected_version": 1},
        headers={"If-Match": '"1"'},
    )
    assert agreeing.status_code == 200
    assert get(api, "guarded")["value"] == "v2"


@pytest.mark.parametrize("if_match", ["abc", '"0"', '"-1"', '"1.5"', '"1", "2"', '""'])
def test_malformed_if_match_is_refused(api: TestClient, if_match: str) -> None:
    create(api, "guarded", "v1")
    response = api.patch(
        "/v1/secrets/guarded", json={"value": "v2"}, headers={"If-Match": if_match}
    )
    assert_error(response, 422, "validation_error", "header.if-match")
    assert get(api, "guarded")["version"] == 1


@pytest.mark.parametrize("bad", [0, -3, "three"])
def test_bad_expected_version_is_refused(api: TestClient, bad: Any) -> None:
    create(api, "guarded")
    response = api.patch("/v1/secrets/guarded", json={"value": "x", "expected_version": bad})
    assert_error(response, 422, "validation_error", "body.expected_version")


@pytest.mark.parametrize("body", [{}, {"expected_version": 1}])
def test_update_with_nothing_to_change_is_refused(api: TestClient, body: dict[str, Any]) -> None:
    create(api, "unchanged")
    response = api.patch("/v1/secrets/unchanged", json=body)
    assert_error(response, 422, "validation_error", "body")


def test_update_value_null_is_refused(api: TestClient) -> None:
    create(api, "kept", "value")
    response = api.patch("/v1/secrets/kept", json={"value": None})
    assert_error(response, 422, "validation_error", "body.value")
    assert get(api, "kept")["value"] == "value"


def test_update_value_empty_is_refused(api: TestClient) -> None:
    create(api, "kept", "value")
    response = api.patch("/v1/secrets/kept", json={"value": ""})
    assert_error(response, 422, "validation_error", "body.value")


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"name": "other"}, "body.name"),
        ({"description": "d" * 1001}, "body.description"),
        ({"metadata": {f"k{i}": 1 for i in range(65)}}, "body.metadata"),
        ({"metadata": ["x"]}, "body.metadata"),
        ({"value": 5}, "body.value"),
    ],
)
def test_update_refuses_bad_fields(api: TestClient, body: dict[str, Any], location: str) -> None:
    create(api, "kept", "value", description="d")
    response = api.patch("/v1/secrets/kept", json=body)
    assert_error(response, 422, "validation_error", location)
    secret = get(api, "kept")
    assert (secret["value"], secret["description"], secret["metadata"]) == ("value", "d", {})


def test_update_unknown_secret_is_not_found(api: TestClient) -> None:
    response = api.patch("/v1/secrets/ghost", json={"description": "x"})
    error = assert_error(response, 404, "not_found")
    assert "'ghost'" in error["message"]
    # not found wins over a version that could not match anyway
    response = api.patch("/v1/secrets/ghost", json={"value": "x", "expected_version": 5})
    assert_error(response, 404, "not_found")
    assert names(api) == []


# -- upsert (PUT) -----------------------------------------------------------------------------
def test_put_creates_with_201(api: TestClient) -> None:
    value = canary()
    response = api.put(
        "/v1/secrets/fresh", json={"value": value, "description": "d", "metadata": {"k": 1}}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert_secret(body, "fresh")
    assert (body["version"], body["description"], body["metadata"]) == (1, "d", {"k": 1})
    assert value not in response.text
    assert response.headers["cache-control"] == "no-store"
    assert get(api, "fresh")["value"] == value


def test_put_replaces_with_200_and_keeps_omitted_fields(api: TestClient) -> None:
    created = create(api, "existing", "one", description="kept", metadata={"k": "kept"})
    response = api.put("/v1/secrets/existing", json={"value": "two"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_secret(body, "existing")
    assert body["id"] == created["id"]
    assert (body["version"], body["description"], body["metadata"]) == (2, "kept", {"k": "kept"})
    assert get(api, "existing")["value"] == "two"
    assert get(api, "existing", version=1)["value"] == "one"
    # given fields replace
    response = api.put(
        "/v1/secrets/existing",
        json={"value": "three", "description": None, "metadata": {"new": "yes"}},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["description"], body["metadata"]) == (3, None, {"new": "yes"})


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({}, "body.value"),
        ({"value": ""}, "body.value"),
        ({"value": None}, "body.value"),
        ({"value": "v", "name": "other"}, "body.name"),
        ({"value": "v", "new_name": "other"}, "body.new_name"),
        ({"value": "v", "description": "d" * 1001}, "body.description"),
    ],
)
def test_put_refuses_bad_bodies(api: TestClient, body: dict[str, Any], location: str) -> None:
    response = api.put("/v1/secrets/target", json=body)
    assert_error(response, 422, "validation_error", location)
    assert names(api) == []


# -- delete -----------------------------------------------------------------------------------
def test_delete_answers_id_name_and_deleted_at(api: TestClient) -> None:
    created = create(api, "doomed", "value")
    response = api.delete("/v1/secrets/doomed")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "name", "deleted_at", "purge_after"}
    assert (body["id"], body["name"]) == (created["id"], "doomed")
    assert timestamp(body["deleted_at"]) >= timestamp(created["created_at"])
    # the default recovery window: seven days
    when = dt.datetime.fromisoformat
    window = when(body["purge_after"]) - when(body["deleted_at"])
    assert window == dt.timedelta(days=7)
    assert response.headers["x-request-id"]


def test_deleted_secret_is_gone_everywhere(api: TestClient) -> None:
    create(api, "doomed", "value")
    create(api, "survivor", "value")
    api.patch("/v1/secrets/doomed", json={"value": "second"}).raise_for_status()
    api.delete("/v1/secrets/doomed").raise_for_status()
    error = assert_error(api.get("/v1/secrets/doomed"), 404, "not_found")
    assert "'doomed'" in error["message"]
    assert_error(api.get("/v1/secrets/doomed", params={"version": 1}), 404, "not_found")
    assert_error(api.get("/v1/secrets/doomed/versions"), 404, "not_found")
    assert_error(api.patch("/v1/secrets/doomed", json={"value": "x"}), 404, "not_found")
    assert names(api) == ["survivor"]


def test_a_forced_delete_frees_the_name_at_once(api: TestClient) -> None:
    created = create(api, "reused", "old-value", description="old", metadata={"old": "yes"})
    api.patch("/v1/secrets/reused", json={"value": "old-2"}).raise_for_status()
    api.delete("/v1/secrets/reused").raise_for_status()
    refused = api.post("/v1/secrets", json={"name": "reused", "value": "x"})
    error = assert_error(refused, 409, "conflict")
    assert "restore" in error["message"]
    purged = api.delete("/v1/secrets/reused", params={"force": "true"})
    assert purged.status_code == 200, purged.text
    assert purged.json()["purge_after"] is None
    again = create(api, "reused", "new-value")
    assert again["id"] != created["id"]
    assert (again["version"], again["description"], again["metadata"]) == (1, None, {})
    assert get(api, "reused")["value"] == "new-value"
    versions = api.get("/v1/secrets/reused/versions").json()["items"]
    assert [v["version"] for v in versions] == [1]
    assert_error(api.get("/v1/secrets/reused", params={"version": 2}), 404, "not_found")


def test_delete_unknown_is_not_found(api: TestClient) -> None:
    error = assert_error(api.delete("/v1/secrets/ghost"), 404, "not_found")
    assert "'ghost'" in error["message"]
    create(api, "once")
    api.delete("/v1/secrets/once").raise_for_status()
    assert_error(api.delete("/v1/secrets/once"), 404, "not_found")


def test_rotation_recipe_of_the_seed_guide(api: TestClient) -> None:
    """Create a temporary secret, archive the old one, delete it, rename the new one."""
    create(api, "stripe_api_key", "sk_test_old", description="Stripe", metadata={"o": "1"})
    temp = "stripe_api_key_rotation_1a2b3c4d"
    create(api, temp, "sk_test_new_value_after_rotation", metadata={"rotationDate": "now"})
    old = get(api, "stripe_api_key")
    archived = {**old["metadata"], "archived": "true", "replacedBy": temp}
    api.patch("/v1/secrets/stripe_api_key", json={"metadata": archived}).raise_for_status()
    api.delete("/v1/secrets/stripe_api_key").raise_for_status()
    response = api.patch(
        f"/v1/secrets/{temp}",
        json={
            "new_name": "stripe_api_key",
            "description": old["description"],
            "metadata": {"lastRotated": "now"},
        },
    )
    assert response.status_code == 200, response.text
    rotated = get(api, "stripe_api_key")
    assert rotated["value"] == "sk_test_new_value_after_rotation"
    assert rotated["description"] == "Stripe"
    assert rotated["metadata"] == {"lastRotated": "now"}
    assert names(api) == ["stripe_api_key"]


# -- versions ---------------------------------------------------------------------------------
def test_versions_are_newest_first_and_hold_no_value(
    make_client: MakeClient, services: Services
) -> None:
    key, record = create_api_key(services.store, services.barrier, "default")
    api = make_client(key=key)
    values = [canary(f"v{i}") for i in range(3)]
    create(api, "history", values[0])
    api.patch("/v1/secrets/history", json={"value": values[1]}).raise_for_status()
    api.patch("/v1/secrets/history", json={"description": "not a version"}).raise_for_status()
    api.put("/v1/secrets/history", json={"value": values[2]}).raise_for_status()
    response = api.get("/v1/secrets/history/versions")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items"}
    assert [v["version"] for v in body["items"]] == [3, 2, 1]
    for item in body["items"]:
        assert set(item) == {"version", "created_at", "created_by"}
        timestamp(item["created_at"])
        assert item["created_by"] == record.id
    created = [timestamp(v["created_at"]) for v in body["items"]]
    assert created == sorted(created, reverse=True)
    for value in values:
        assert value not in response.text
    assert "ENCRYPTED" not in response.text


def test_versions_name_the_key_that_wrote_each(make_client: MakeClient, services: Services) -> None:
    first_key, first = create_api_key(services.store, services.barrier, "default")
    second_key, second = create_api_key(services.store, services.barrier, "default")
    create(make_client(key=first_key), "shared", "a")
    make_client(key=second_key).patch("/v1/secrets/shared", json={"value": "b"}).raise_for_status()
    items = make_client(key=first_key).get("/v1/secrets/shared/versions").json()["items"]
    assert [(v["version"], v["created_by"]) for v in items] == [(2, second.id), (1, first.id)]


def test_versions_of_an_unknown_secret_is_not_found(api: TestClient) -> None:
    error = assert_error(api.get("/v1/secrets/ghost/versions"), 404, "not_found")
    assert "'ghost'" in error["message"]


# -- audit ------------------------------------------------------------------------------------
def test_audit_lists_events_newest_first(make_client: MakeClient, services: Services) -> None:
    key, record = create_api_key(services.store, services.barrier, "default")
    api = make_client(key=key)
    value = canary()
    created = api.post("/v1/secrets", json={"name": "audited", "value": value})
    assert created.status_code == 201
    get(api, "audited")
    api.patch("/v1/secrets/audited", json={"value": canary()}).raise_for_status()
    api.delete("/v1/secrets/audited").raise_for_status()
    response = api.get("/v1/audit")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "limit", "offset", "has_more"}
    assert (body["limit"], body["offset"], body["has_more"]) == (100, 0, False)
    events = body["items"]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("secret.delete", "success"),
        ("secret.update", "success"),
        ("secret.read", "success"),
        ("secret.create", "success"),
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)
    times = [timestamp(e["time"]) for e in events]
    assert times == sorted(times, reverse=True)
    for event in events:
        assert set(event) == AUDIT_FIELDS
        assert event["key_id"] == record.id
        assert event["secret_name"] == "audited"
        assert event["secret_id"] == created.json()["id"]
    assert events[-1]["request_id"] == created.headers["x-request-id"]
    assert value not in response.text


def test_audit_filters_by_secret_and_action(api: TestClient) -> None:
    create(api, "alpha")
    create(api, "beta")
    get(api, "alpha")
    get(api, "beta")
    get(api, "alpha", version=1)
    api.get("/v1/secrets/missing")
    alpha = audit(api, secret="alpha")
    assert [e["action"] for e in alpha] == ["secret.read", "secret.read", "secret.create"]
    assert {e["secret_name"] for e in alpha} == {"alpha"}
    reads = audit(api, action="secret.read")
    assert [(e["secret_name"], e["outcome"]) for e in reads] == [
        ("missing", "not_found"),
        ("alpha", "success"),
        ("beta", "success"),
        ("alpha", "success"),
    ]
    both = audit(api, secret="beta", action="secret.read")
    assert [(e["secret_name"], e["action"]) for e in both] == [("beta", "secret.read")]
    assert audit(api, secret="nobody") == []
    assert audit(api, action="secret.delete") == []


def test_audit_pages(api: TestClient) -> None:
    for i in range(5):
        create(api, f"s{i}")
    everything = audit(api)
    assert len(everything) == 5
    first = api.get("/v1/audit", params={"limit": 2}).json()
    assert (len(first["items"]), first["has_more"], first["limit"]) == (2, True, 2)
    last = api.get("/v1/audit", params={"limit": 2, "offset": 4}).json()
    assert (len(last["items"]), last["has_more"], last["offset"]) == (1, False, 4)
    assert [e["id"] for e in first["items"] + last["items"]] == [
        everything[i]["id"] for i in (0, 1, 4)
    ]


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"action": "secret.explode"}, "query.action"),
        ({"action": ""}, "query.action"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"offset": -1}, "query.offset"),
    ],
)
def test_audit_refuses_bad_queries(api: TestClient, params: dict[str, Any], location: str) -> None:
    assert_error(api.get("/v1/audit", params=params), 422, "validation_error", location)


def test_audit_needs_the_audit_read_scope(make_client: MakeClient) -> None:
    owner = make_client()
    create(owner, "watched")
    worker = make_client(scopes=("secrets:read", "secrets:write", "tasks:run"))
    error = assert_error(worker.get("/v1/audit"), 403, "forbidden")
    assert "audit:read" in error["message"]
    auditor = make_client(scopes=("audit:read",))
    events = audit(auditor)
    # the refused attempt is itself on the trail
    assert [(e["action"], e["outcome"]) for e in events[:2]] == [
        ("audit.read", "forbidden"),
        ("secret.create", "success"),
    ]


def test_audit_records_failures_without_values(api: TestClient) -> None:
    value = canary()
    create(api, "dup", value)
    assert api.post("/v1/secrets", json={"name": "dup", "value": value}).status_code == 409
    stale = api.patch("/v1/secrets/dup", json={"value": value, "expected_version": 9})
    assert stale.status_code == 412
    response = api.get("/v1/audit", params={"secret": "dup"})
    events = response.json()["items"]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("secret.update", "precondition_failed"),
        ("secret.create", "conflict"),
        ("secret.create", "success"),
    ]
    assert value not in response.text


def test_patch_with_only_a_null_new_name_has_nothing_to_update(api: TestClient) -> None:
    create(api, "lonely")
    assert_error(api.patch("/v1/secrets/lonely", json={"new_name": None}), 422, "validation_error")


def test_renaming_to_its_own_name_changes_nothing(api: TestClient) -> None:
    before = create(api, "same")
    after = api.patch("/v1/secrets/same", json={"new_name": "same"})
    assert after.status_code == 200
    assert after.json()["updated_at"] == before["updated_at"]


def test_delete_with_if_match_is_conditional(api: TestClient) -> None:
    create(api, "guarded")
    api.patch("/v1/secrets/guarded", json={"value": "v2"})
    stale = api.delete("/v1/secrets/guarded", headers={"If-Match": '"1"'})
    assert_error(stale, 412, "precondition_failed")
    assert get(api, "guarded")["value"] == "v2"
    assert api.delete("/v1/secrets/guarded", headers={"If-Match": '"2"'}).status_code == 200


def test_put_with_if_match_is_conditional(api: TestClient) -> None:
    create(api, "putme")
    stale = api.put("/v1/secrets/putme", json={"value": "x"}, headers={"If-Match": '"5"'})
    assert_error(stale, 412, "precondition_failed")
    fresh = api.put("/v1/secrets/putme", json={"value": "x"}, headers={"If-Match": '"1"'})
    assert fresh.status_code == 200
    assert fresh.json()["version"] == 2
    missing = api.put("/v1/secrets/absent", json={"value": "x"}, headers={"If-Match": '"1"'})
    assert_error(missing, 404, "not_found")
