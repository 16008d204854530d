"""Both SDKs against the server's OpenAPI document, so that the hand-written copies of each
shape (the server's schemas, the Python models, the Node.js types) cannot drift apart.

The document is read over HTTP from the app (the ``api`` fixture), as a client would read
it. Every answer model of the Python SDK (``strongroom.models``) and every type of the
Node.js SDK (``clients/node/src/types.ts``, read by the small TypeScript reader below) is
matched with its component schema: the same fields, each required and nullable where the
schema says so, of a comparable type. Every call of the Python SDK is matched with its
route: the path it builds, the parameters it takes (and the Node.js parameter type of the
same call), the model it reads the answer into. Whatever the document has that no SDK
models, and whatever an SDK does differently on purpose, is listed here with the reason,
so that a new field, model or route on either side fails until someone decides.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from strongroom import NotGiven, Strongroom, models
from strongroom._core import Operation
from strongroom.exceptions import ErrorDetail
from strongroom.resources import audit, executions, keys, secrets, tasks

NODE_SRC = Path(__file__).resolve().parents[1] / "clients" / "node" / "src"
Spec = dict[str, Any]


@pytest.fixture
def backend() -> str:
    """The document does not depend on the store: SQLite is enough."""
    return "sqlite"


@pytest.fixture
def openapi(api: TestClient) -> Spec:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    spec: Spec = response.json()
    return spec


# The SDKs' name of a component whose server name is too short for a library's namespace:
# both SDKs' ``Key`` would say nothing of which key, and ``Rule`` of what it rules.
COMPONENT_OF = {
    "ApiKey": "Key",
    "CreatedApiKey": "KeyCreated",
    "RotatedApiKey": "KeyRotated",
    "ApiKeyList": "KeyList",
    "KeyRule": "Rule",
}


def server_name(name: str) -> str:
    """The server's name of the SDKs' model or type ``name``."""
    return COMPONENT_OF.get(name, name)


# -- one field, whoever describes it --------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """A field reduced to what all three can say: ``kind`` is ``string``, ``integer``,
    ``number``, ``boolean``, ``object`` (a JSON object of any keys), ``any`` (any JSON),
    ``enum:a|b``, ``list[<kind>]``, ``ref:<Model>``, or ``union:...`` and ``function``
    (never equal to a schema's)."""

    kind: str
    nullable: bool
    required: bool


Shape = dict[str, Field]
SCALARS = {"string", "integer", "number", "boolean", "object"}


def _enum(values: Sequence[object]) -> str:
    return "enum:" + "|".join(sorted(str(v) for v in values))


def spec_kind(spec: Spec, schema: Mapping[str, Any]) -> tuple[str, bool]:
    """The kind of a JSON schema, and whether it admits null."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        target = spec["components"]["schemas"][name]
        if name == "JsonValue" or "enum" in target:
            return spec_kind(spec, target)
        return f"ref:{name}", False
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b != {"type": "null"}]
        nullable = len(branches) < len(schema["anyOf"])
        if len(branches) != 1:
            return "union:" + str(len(branches)), nullable
        kind, inner_nullable = spec_kind(spec, branches[0])
        return kind, nullable or inner_nullable
    if "enum" in schema:
        return _enum(schema["enum"]), False
    declared = schema.get("type")
    nullable = isinstance(declared, list) and "null" in declared
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), None)
    if declared is None:
        return "any", True
    if declared == "array":
        return f"list[{spec_kind(spec, schema['items'])[0]}]", nullable
    return str(declared), nullable


def component_shape(spec: Spec, name: str) -> Shape:
    schema = spec["components"]["schemas"][name]
    required = set(schema.get("required", ()))
    return {
        prop: Field(*spec_kind(spec, sub), required=prop in required)
        for prop, sub in schema["properties"].items()
    }


PY_SCALARS: dict[object, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dt.datetime: "string",  # the wire's RFC 3339 string, parsed
}


def py_kind(annotation: object) -> tuple[str, bool]:
    """The kind of a Python annotation; ``NOT_GIVEN`` is leaving the field out."""
    if annotation is Any:
        return "any", True
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a not in (type(None), NotGiven)]
        nullable = type(None) in args
        if len(rest) != 1:
            return "union:" + "|".join(py_kind(a)[0] for a in rest), nullable
        kind, inner_nullable = py_kind(rest[0])
        return kind, nullable or inner_nullable
    if origin is Literal:
        return _enum(args), False
    if origin in (list, Sequence):
        return f"list[{py_kind(args[0])[0]}]", False
    if origin in (dict, Mapping):
        return "object", False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"ref:{server_name(annotation.__name__)}", False
    if is_typeddict(annotation):  # a request item given as a dict (BatchPutItem)
        return f"ref:{annotation.__name__}", False
    return PY_SCALARS[annotation], False


def python_shape(model: type) -> Shape:
    """A pydantic model's fields, or a dataclass's."""
    if issubclass(model, BaseModel):
        return {
            name: Field(*py_kind(info.annotation), required=info.is_required())
            for name, info in model.model_fields.items()
        }
    assert dataclasses.is_dataclass(model), model
    hints = get_type_hints(model)
    return {
        f.name: Field(*py_kind(hints[f.name]), required=f.default is dataclasses.MISSING)
        for f in dataclasses.fields(model)
    }


# -- reading TypeScript declarations ---------------------------------------------------------------
@dataclass
class Interface:
    params: list[str]  # type parameters, as Page<T> has
    extends: list[str]
    members: dict[str, tuple[bool, str]]  # name: (optional, type)
    open: bool = False  # has an index signature


@dataclass
class TypeScript:
    interfaces: dict[str, Interface] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return set(self.interfaces) | set(self.aliases)


_OPEN, _CLOSE = "([{<", ")]}>"


def split_top(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` outside brackets (``=>`` is no bracket)."""
    parts, depth, start = [], 0, 0
    text = text.replace("=>", "→")
    for i, char in enumerate(text):
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [" ".join(p.replace("→", "=>").split()) for p in parts if p.strip()]


def _closing(text: str, start: int) -> int:
    """The index of the bracket closing the one at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        depth += text[i] in _OPEN[:3]
        depth -= text[i] in _CLOSE[:3]
        if depth == 0:
            return i
    raise ValueError(f"unbalanced brackets after {text[start : start + 40]!r}")


MEMBER = re.compile(r"(?:readonly\s+)?(\w+)(\?)?\s*:\s*(.+)", re.S)
INDEX = re.compile(r"\[\w+\s*:\s*string\]\s*:\s*.+", re.S)
INDEXED_OBJECT = re.compile(r"\{\s*\[\w+\s*:\s*string\]\s*:\s*[^;{}]+;?\s*\}", re.S)
DECLARATION = re.compile(r"^\s*export (interface|type) (\w+)(?:<([\w, ]+)>)?", re.M)


def read_typescript(*sources: str) -> TypeScript:
    """The interfaces and type aliases that TypeScript ``sources`` export. Anything this
    reader does not understand raises, so a new construct cannot pass unread."""
    found = TypeScript()
    for source in sources:
        text = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
        text = re.sub(r"^\s*//.*$", "", text, flags=re.M)
        for match in DECLARATION.finditer(text):
            what, name, params = match.groups()
            rest = text[match.end() :]
            if what == "type":
                found.aliases[name] = split_top(rest.split("=", 1)[1], ";")[0]
                continue
            head, _, _ = rest.partition("{")
            start = match.end() + len(head)
            body = text[start + 1 : _closing(text, start)]
            extends = split_top(head.partition("extends")[2], ",")
            iface = Interface(split_top(params or "", ","), extends, members={})
            for member in split_top(body, ";"):
                if INDEX.fullmatch(member):
                    iface.open = True
                elif parsed := MEMBER.fullmatch(member):
                    iface.members[parsed[1]] = (parsed[2] == "?", parsed[3])
                else:
                    raise ValueError(f"cannot read the member {member!r} of {name}")
            found.interfaces[name] = iface
    return found


# Named types a field may have that are no interface of the contract's.
NODE_NAMED = {
    "JsonValue": ("any", True),  # a recursive alias of every JSON value
    "Metadata": ("object", False),  # { [key: string]: JsonValue }
    "TaskStep": ("object", False),  # a step is the caller's data, any fields beside kind
    "unknown": ("any", True),
}


def ts_kind(ts: TypeScript, text: str) -> tuple[str, bool]:
    parts = split_top(text, "|")
    nullable = "null" in parts
    rest = [p for p in parts if p != "null"]
    if rest and all(re.fullmatch(r'"[^"]*"', p) for p in rest):
        return _enum([p.strip('"') for p in rest]), nullable
    if len(rest) != 1:
        return "union:" + "|".join(rest), nullable
    (single,) = rest
    if "=>" in single:
        return "function", nullable
    if single.endswith("[]"):
        return f"list[{ts_kind(ts, single[:-2])[0]}]", nullable
    if single in NODE_NAMED:
        kind, named_nullable = NODE_NAMED[single]
        return kind, nullable or named_nullable
    if single in ("string", "number", "boolean"):
        return single, nullable
    if single in ts.aliases:
        kind, alias_nullable = ts_kind(ts, ts.aliases[single])
        return kind, nullable or alias_nullable
    if single in ts.interfaces:
        return f"ref:{server_name(single)}", nullable
    if INDEXED_OBJECT.fullmatch(single):  # { [key: string]: string | number }
        return "object", nullable
    raise ValueError(f"cannot read the TypeScript type {single!r}")


def node_shape(ts: TypeScript, name: str, args: Sequence[str] = ()) -> Shape:
    if name in ts.aliases:  # e.g. SecretList = Page<Secret>
        generic = re.fullmatch(r"(\w+)<(\w+)>", ts.aliases[name])
        assert generic, f"{name} = {ts.aliases[name]} is no interface"
        return node_shape(ts, generic[1], [generic[2]])
    iface = ts.interfaces[name]
    given = dict(zip(iface.params, args, strict=True))
    shape: Shape = {}
    for parent in iface.extends:  # e.g. Named extends Box<number>
        base = re.fullmatch(r"(\w+)(?:<(.+)>)?", parent)
        assert base, parent
        shape.update(node_shape(ts, base[1], split_top(base[2] or "", ",")))
    for member, (optional, text) in iface.members.items():
        text = re.sub(r"\w+", lambda word: given.get(word[0], word[0]), text)
        shape[member] = Field(*ts_kind(ts, text), required=not optional)
    return shape


@pytest.fixture(scope="module")
def node() -> TypeScript:
    return read_typescript(*[(NODE_SRC / name).read_text() for name in ("types.ts", "errors.ts")])


def camel(name: str) -> str:
    """The Node.js SDK's spelling of a wire name (as its ``wire.ts`` converts answers)."""
    return re.sub(r"_([a-z0-9])", lambda m: m[1].upper(), name)


# -- comparing ------------------------------------------------------------------------------------
# Where an SDK's type is deliberately wider than the schema's: (sdk, model, field): why.
WIDER = {
    ("python", "ExecutionStep", "status"): "a str, so that a step status added later parses",
    ("node", "SecretPolicyParams", "allowedTools"): "strings: the server names the tools it has",
}


def differences(
    sdk: Shape,
    server: Shape,
    *,
    where: str,
    lang: str,
    spell: Callable[[str], str] = lambda n: n,
    answer: bool = True,
) -> list[str]:
    """What ``sdk`` says differently from ``server``, one line each (empty: they agree).

    An answer's field is nullable in the SDK exactly when the server may send null; the
    Node.js SDK marks optional exactly the fields the server may leave out, while a Python
    model may give a default to a field the server always sends (an older server may
    not). A request's fields must be required exactly when the server requires them;
    their nullability is the SDK's business (``None`` often means "leave it out")."""
    expected = {spell(name): f for name, f in server.items()}
    problems = [
        f"{where}.{n}: in the schema, not in the {lang} SDK" for n in expected.keys() - sdk.keys()
    ]
    problems += [
        f"{where}.{n}: in the {lang} SDK, not in the schema" for n in sdk.keys() - expected.keys()
    ]
    for name in sdk.keys() & expected.keys():
        ours, theirs = sdk[name], expected[name]
        kinds = [ours.kind, theirs.kind]
        if lang == "node":  # a TypeScript number is either
            kinds[1] = kinds[1].replace("integer", "number")
        comparable = answer or all(k.split("[")[0] in SCALARS | {"list", "any"} for k in kinds)
        wider = (lang, where, name) in WIDER
        if comparable and kinds[0] != kinds[1] and not wider:
            problems.append(f"{where}.{name}: {lang} has {kinds[0]}, the schema {kinds[1]}")
        if answer and ours.nullable != theirs.nullable:
            problems.append(
                f"{where}.{name}: nullable in {'the schema' if theirs.nullable else lang} only"
            )
        exact = lang == "node" or not answer
        if ours.required != theirs.required and (exact or ours.required):
            problems.append(
                f"{where}.{name}: required in {lang if ours.required else 'the schema'} only"
            )
    return sorted(problems)


# -- answers --------------------------------------------------------------------------------------
PYTHON_MODELS = [
    *(
        getattr(models, name)
        for name in models.__all__
        if name not in ("ExecutionStatus", "KeyScope")
    ),
    ErrorDetail,
]

# The Node.js SDK's types, by what they are. Answers have their component's name.
NODE_ANSWERS = {
    *("Secret", "SecretPolicy", "SecretList", "DeletedSecret", "SecretVersion"),
    *("SecretVersionList", "Task", "CreatedTask", "TaskWarning", "TaskList", "DeletedTask"),
    *("Execution", "ExecutionList", "ExecutionStep", "ExecutionStepList"),
    *("AuditRecord", "AuditList", "ErrorDetail"),
    *("ApiKey", "CreatedApiKey", "RotatedApiKey", "ApiKeyList", "KeyRule"),
    *("Rotation", "BatchGetResponse", "BatchError", "BatchPutResponse", "BatchPutResult"),
}
# Request types, by the component each is compared with (a Rotation is given as it is read).
NODE_REQUEST_MODELS = {
    "SecretPolicyParams": "SecretPolicyChange",
    "Rotation": "RotationChange",
    "BatchPutItem": "BatchPutItem",
}
NODE_NOT_WIRE = {
    "Timestamp": "the RFC 3339 string: a Timestamp field is compared as a string",
    "JsonValue": "any JSON value",
    "Metadata": "a JSON object, the caller's data",
    "ExecutionStatus": "the enum of Execution.status, compared there",
    "KeyScope": "the enum of KeyCreateParams.scopes and KeyUpdateParams.scopes, compared there",
    "Page": "the generic page: compared as SecretList, TaskList, ExecutionList, AuditList...",
    "TaskStep": "a step is the caller's data, sent and returned untouched",
    "TaskCreateParams": "{ task } or { steps }: TaskDefinition is compared with the body",
    "SecretRef": "a secret's name, alone or as { name }: the path",
    "RequestOptions": "per-call options of the client (timeout, retries, signal), not sent",
    "SecretListAllParams": "listAll pages through secrets.list",
    "SecretRotateOptions": "rotate is a get and a conditional update",
    "WaitOptions": "executions.wait polls executions.get",
    "ErrorFields": "what an error object is built from, in the SDK's spelling",
    "APIErrorClass": "the constructor type of the error classes",
}
# Components that no SDK models as such, and why.
NOT_MODELLED = {
    "Health": "GET /healthz is for probes and load balancers, not a client call",
    "Ready": "GET /readyz is for probes and load balancers, not a client call",
    "ErrorEnvelope": "read field by field by the error mapping of both SDKs",
    "ErrorBody": "read field by field by the error mapping of both SDKs",
    "Action": "the audit actions; AuditRecord.action is a string in the answer",
    "JsonValue": "any JSON value",
    "JulepSecret": "/julep serves the official julep client; the SDKs' Julep uses /v1",
    "JulepSecretCreate": "/julep serves the official julep client",
    "JulepSecretUpdate": "/julep serves the official julep client",
    "JulepDeleted": "/julep serves the official julep client",
    "Session": "/v1/sessions is the web console's login (and `strongroom login`'s check)",
    "Identity": "/v1/sessions/current: who a browser session or the CLI's key is",
}


def test_every_python_model_matches_its_schema(openapi: Spec) -> None:
    problems = []
    for model in PYTHON_MODELS:
        server = component_shape(openapi, server_name(model.__name__))
        where = model.__name__
        problems += differences(python_shape(model), server, where=where, lang="python")
    assert problems == []


def test_every_node_type_matches_its_schema(openapi: Spec, node: TypeScript) -> None:
    problems = []
    for name in sorted(NODE_ANSWERS):
        server = component_shape(openapi, server_name(name))
        problems += differences(
            node_shape(node, name), server, where=name, lang="node", spell=camel
        )
    for name, component in NODE_REQUEST_MODELS.items():
        server = component_shape(openapi, component)
        ours = node_shape(node, name)
        problems += differences(ours, server, where=name, lang="node", spell=camel, answer=False)
    assert problems == []


def test_every_type_and_component_is_compared_or_excused(openapi: Spec, node: TypeScript) -> None:
    """A new Node.js type or server schema fails here until it is compared or excused."""
    node_params = {call.node for call in CALLS if call.node} | {"TaskDefinition"}
    classified = NODE_ANSWERS | NODE_REQUEST_MODELS.keys() | NODE_NOT_WIRE.keys() | node_params
    assert node.names == classified
    compared = {server_name(name) for name in {m.__name__ for m in PYTHON_MODELS} | NODE_ANSWERS}
    compared |= set(NODE_REQUEST_MODELS.values()) | {"SecretCreate", "SecretUpdate", "SecretPut"}
    # request bodies, compared with the calls below
    compared |= {"ExecutionCreate", "KeyCreate", "KeyUpdate", "KeyRotate"}
    compared |= {"SecretRollback", "BatchGetRequest", "BatchPutRequest"}
    assert set(openapi["components"]["schemas"]) == compared | NOT_MODELLED.keys()


# -- calls ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    name: str
    build: Callable[..., Operation[Any]]
    example: dict[str, Any]  # arguments that make a request
    node: str | None = None  # the Node.js SDK's parameter type of the same call


CALLS = [
    Call(
        "secrets.create", secrets.create_secret, {"name": "n", "value": "v"}, "SecretCreateParams"
    ),
    Call("secrets.list", secrets.list_secrets, {}, "SecretListParams"),
    Call("secrets.get", secrets.get_secret, {"name": "n"}, "SecretGetParams"),
    Call("secrets.update", secrets.update_secret, {"name": "n"}, "SecretUpdateParams"),
    Call(
        "secrets.upsert", secrets.upsert_secret, {"name": "n", "value": "v"}, "SecretUpsertParams"
    ),
    Call("secrets.delete", secrets.delete_secret, {"name": "n"}, "SecretDeleteParams"),
    Call("secrets.versions", secrets.secret_versions, {"name": "n"}),
    Call("secrets.purge", secrets.purge_secret, {"name": "n"}),
    Call("secrets.restore", secrets.restore_secret, {"name": "n"}),
    Call(
        "secrets.rollback",
        secrets.rollback_secret,
        {"name": "n", "version": 1},
        "SecretRollbackParams",
    ),
    Call("secrets.rotate_now", secrets.rotate_secret_now, {"name": "n"}),
    Call("secrets.batch_get", secrets.batch_get_secrets, {"names": ["n"]}, "SecretBatchGetParams"),
    Call(
        "secrets.batch_put",
        secrets.batch_put_secrets,
        {"secrets": [{"name": "n", "value": "v"}]},
        "SecretBatchPutParams",
    ),
    Call("tasks.create", tasks.create_task, {"steps": []}),
    Call("tasks.get", tasks.get_task, {"task_id": "t"}),
    Call("tasks.list", tasks.list_tasks, {}, "ListParams"),
    Call("tasks.delete", tasks.delete_task, {"task_id": "t"}),
    Call("tasks.execute", tasks.execute_task, {"task_id": "t"}, "TaskExecuteParams"),
    Call("executions.get", executions.get_execution, {"execution_id": "e"}),
    Call("executions.list", executions.list_executions, {}, "ExecutionListParams"),
    Call("executions.steps", executions.execution_steps, {"execution_id": "e"}),
    Call("executions.cancel", executions.cancel_execution, {"execution_id": "e"}),
    Call("audit.list", audit.list_audit, {}, "AuditListParams"),
    Call("keys.create", keys.create_key, {}, "KeyCreateParams"),
    Call("keys.list", keys.list_keys, {}, "KeyListParams"),
    Call("keys.get", keys.get_key, {"key_id": "k"}),
    Call("keys.update", keys.update_key, {"key_id": "k"}, "KeyUpdateParams"),
    Call("keys.revoke", keys.revoke_key, {"key_id": "k"}),
    Call("keys.rotate", keys.rotate_key, {"key_id": "k"}, "KeyRotateParams"),
]
# A parameter the SDKs send under another name than the route's: (call, name): route's
# name. The If-Match header holds the version as a string ('"3"').
SENT_AS = {
    ("secrets.upsert", "expected_version"): "if-match",
    ("secrets.delete", "expected_version"): "if-match",
}
# A route's input that an SDK call does not use: (call, input): why.
UNUSED = {
    ("secrets.update", "if-match"): "update sends expected_version in the body",
    ("secrets.rollback", "if-match"): "rollback sends expected_version in the body",
    ("secrets.purge", "if-match"): "a purge is unconditional",
    ("secrets.purge", "force"): "a purge is a delete that always forces",
}
# A call that reads its answer into another model than the route's: call: (model, why).
ANSWERED_AS = {
    "tasks.create": ("Task", "the warnings stay an extra field; CreatedTask would change the type"),
    "tasks.delete": ("dict", "the answer as it came, a dict, since before DeletedTask"),
}
NOT_IN_SDK = {
    "/healthz": "a probe for load balancers",
    "/readyz": "a probe for load balancers",
    "/julep/": "the official julep client's routes; the SDKs' Julep is their client on /v1",
    "/v1/sessions": "browser sessions (a cookie) for the web console, and the CLI's login",
}


def route_of(spec: Spec, op: Operation[Any]) -> str:
    for template, methods in spec["paths"].items():
        pattern = re.sub(r"\{\w+\}", "[^/]+", template)
        if re.fullmatch(pattern, op.path) and op.method.lower() in methods:
            return str(template)
    raise AssertionError(f"no route answers {op.method} {op.path}")


def body_shape(spec: Spec, schema: Mapping[str, Any]) -> Shape:
    if "$ref" in schema:
        return component_shape(spec, schema["$ref"].rsplit("/", 1)[1])
    forms = [form for form in schema["anyOf"] if form != {"type": "null"}]
    if len(forms) == 1:
        return body_shape(spec, forms[0])
    # Alternative forms (the task's fields, or {"task": {...}}): any field of any, none required.
    return {
        name: Field(*spec_kind(spec, sub), required=False)
        for form in forms
        for name, sub in form["properties"].items()
    }


def route_inputs(spec: Spec, method: str, template: str) -> Shape:
    """What a route takes: path, query and header parameters and the body's fields."""
    operation = spec["paths"][template][method.lower()]
    inputs: Shape = {}
    for param in operation.get("parameters", ()):
        schema = param.get("schema") or next(iter(param["content"].values()))["schema"]
        inputs[param["name"]] = Field(
            *spec_kind(spec, schema), required=param.get("required", False)
        )
    if body := operation.get("requestBody"):
        inputs |= body_shape(spec, body["content"]["application/json"]["schema"])
    return inputs


def answer_of(spec: Spec, method: str, template: str) -> str:
    responses = spec["paths"][template][method.lower()]["responses"]
    status = min(s for s in responses if s.startswith("2"))
    return str(responses[status]["content"]["application/json"]["schema"]["$ref"]).rsplit("/")[-1]


def server_inputs(spec: Spec, call: Call) -> tuple[Operation[Any], str, Shape]:
    """The call's request (made of its example), its route, and what the route takes."""
    op = call.build(**call.example)
    template = route_of(spec, op)
    inputs = route_inputs(spec, op.method, template)
    return op, template, {n: f for n, f in inputs.items() if (call.name, n) not in UNUSED}


def as_sent(call: Call, shape: Shape) -> Shape:
    """An SDK's parameters (in the wire's spelling) under the names the route knows them."""
    return {
        SENT_AS.get((call.name, n), n): dataclasses.replace(f, kind="string")
        if (call.name, n) in SENT_AS
        else f
        for n, f in shape.items()
    }


def test_every_python_call_matches_its_route(openapi: Spec) -> None:
    problems, routes = [], set()
    for call in CALLS:
        op, template, server = server_inputs(openapi, call)
        routes.add((op.method.lower(), template))
        parameters = inspect.signature(call.build, eval_str=True).parameters.values()
        ours = {
            p.name: Field(*py_kind(p.annotation), required=p.default is p.empty)
            for p in parameters
            if p.name != "timeout"
        }
        problems += differences(
            as_sent(call, ours), server, where=call.name, lang="python", answer=False
        )
        model = server_name(getattr(op.parse, "__self__", op.parse).__name__)
        expected = answer_of(openapi, op.method, template)
        if model != expected and ANSWERED_AS.get(call.name, ("",))[0] != model:
            problems.append(f"{call.name}: reads a {model}, the route answers a {expected}")
    assert problems == []
    every = {
        (method, template)
        for template, methods in openapi["paths"].items()
        for method in methods
        if not any(template.startswith(prefix) for prefix in NOT_IN_SDK)
    }
    assert every - routes == set(), "routes no SDK call reaches"


def test_every_call_of_the_client_is_compared() -> None:
    client = Strongroom(api_key="sr_x")
    built = {
        getattr(method, "__wrapped__", None)
        for resource in (client.secrets, client.tasks, client.executions, client.audit, client.keys)
        for method in vars(type(resource)).values()
    }
    client.close()
    assert built - {None} == {call.build for call in CALLS}


def snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), name)


def test_every_node_parameter_type_matches_its_route(openapi: Spec, node: TypeScript) -> None:
    problems = []
    for call in CALLS:
        if call.node is not None:
            _, _, server = server_inputs(openapi, call)
            ours = {snake(n): f for n, f in node_shape(node, call.node).items()}
            problems += differences(
                as_sent(call, ours), server, where=call.node, lang="node", answer=False
            )
    # tasks.create({ task }): the task's own fields are the body's first form
    body = openapi["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
    form = body["schema"]["anyOf"][0]
    server = {
        name: Field(*spec_kind(openapi, sub), required=name in form["required"])
        for name, sub in form["properties"].items()
    }
    ours = node_shape(node, "TaskDefinition")
    problems += differences(ours, server, where="TaskDefinition", lang="node", answer=False)
    assert problems == []


# -- the comparison itself ------------------------------------------------------------------------
def test_a_field_renamed_added_or_removed_on_either_side_is_found(
    openapi: Spec, node: TypeScript
) -> None:
    server = component_shape(openapi, "Secret")
    python = python_shape(models.Secret)
    typescript = node_shape(node, "Secret")
    assert differences(python, server, where="Secret", lang="python") == []
    renamed = {("title" if n == "name" else n): f for n, f in server.items()}
    assert differences(python, renamed, where="Secret", lang="python") == [
        "Secret.name: in the python SDK, not in the schema",
        "Secret.title: in the schema, not in the python SDK",
    ]
    added = {**typescript, "rotatedAt": Field("string", nullable=False, required=True)}
    assert differences(added, server, where="Secret", lang="node", spell=camel) == [
        "Secret.rotatedAt: in the node SDK, not in the schema"
    ]
    removed = {n: f for n, f in python.items() if n != "version"}
    assert differences(removed, server, where="Secret", lang="python") == [
        "Secret.version: in the schema, not in the python SDK"
    ]
    nullable = {**server, "value": Field("string", nullable=True, required=True)}
    assert differences(typescript, nullable, where="Secret", lang="node", spell=camel) == [
        "Secret.value: nullable in the schema only"
    ]


def test_the_typescript_reader() -> None:
    source = """
    /** A doc comment, with { braces } and a: colon; */
    export type When = string;
    export type Kind = "a" | "b";
    // a line comment
    export interface Box<T> {
      items: T[];
      readonly when: When | null;
      kind?: Kind;
      check?: (value: string) => unknown;
      tags?: { [key: string]: string | number };
      [key: string]: unknown;
    }
    export interface Named extends Box<number> { name: string }
    export type Boxes = Box<Named>;
    """
    ts = read_typescript(source)
    assert ts.interfaces["Box"].open
    assert node_shape(ts, "Boxes") == {
        "items": Field("list[ref:Named]", nullable=False, required=True),
        "when": Field("string", nullable=True, required=True),
        "kind": Field("enum:a|b", nullable=False, required=False),
        "check": Field("function", nullable=False, required=False),
        "tags": Field("object", nullable=False, required=False),
    }
    with pytest.raises(ValueError, match="cannot read the member"):
        read_typescript("export interface Odd { get(): string }")
    with pytest.raises(ValueError, match="cannot read the TypeScript type"):
        node_shape(read_typescript("export interface Odd { at: Date }"), "Odd")
