"""Units of containment: marks on values, what is shown, stored and sent (no database).

The end-to-end attacker's view is tests/test_containment.py; here each rule of
``server/tasks/containment.py`` and the evaluator's withheld errors is pinned down alone.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from strongroom.server.redact import Redactor
from strongroom.server.tasks import containment
from strongroom.server.tasks.containment import SecretUses, answer_taint, classify, in_slot
from strongroom.server.tasks.expressions import (
    ExpressionError,
    Scope,
    Tainted,
    compile_expression,
    compile_template,
)
from strongroom.server.tasks.tools import REGISTRY

KEY = "ghjkl-mnpqr-stvwx-zGHJK"
SECRETS = {"k": KEY, "pin": "73918", "hex": "9f3a", "pair": "svc-deploy:Xk9#mQ2"}
SCOPE = Scope(secrets=SECRETS, input="hello", inputs={"city": "Paris"})


def shown_of(text: str) -> Any:
    return containment.shown(compile_expression(text).evaluate(SCOPE))


# Every way of deriving a value from a secret that the security review tried, and more:
# each result is shown as the marker alone, whatever its type.
DERIVED = [
    "secrets.k",
    "split(secrets.pair, ':')",
    "split(secrets.pair, ':')[1]",
    "secrets.k[0:7]",
    "secrets.k[::-1]",
    "{secrets.k[::-1]: 1}",
    "{lower(secrets.k): 'v'}",
    "int(secrets.hex, 16)",
    "int(secrets.pin) + 1",
    "len(secrets.k)",
    "secrets.k[0] == 'g'",
    "'g' in secrets.k",
    "secrets.k > 'm'",
    "'a' if secrets.k[0] == 'g' else 'b'",
    "secrets.k and 1",
    "get({'g': 1}, secrets.k[0], 0)",
    "f'{secrets.k:>40}'",
    "f'{secrets.k!r}'",
    "[input, secrets.k]",
    "{'a': [secrets.k]}",
    "b64encode(secrets.k)",
    "json_loads(json_dumps([secrets.k]))[0]",
    "min(split(join(' ', split(secrets.k, '-'))))",
    "round(len(secrets.k) / 3)",
    "upper(secrets.k) * 3",
]


@pytest.mark.parametrize("text", DERIVED)
def test_a_value_derived_from_a_secret_is_shown_as_its_marker_alone(text: str) -> None:
    evaluated = compile_expression("$ " + text).evaluate(SCOPE)
    assert evaluated.secrets  # marked, however it was derived
    assert containment.shown(evaluated) == f"[REDACTED:{','.join(sorted(evaluated.secrets))}]"


def test_values_that_never_touch_a_secret_are_shown_as_they_are() -> None:
    assert shown_of("$ upper(input)") == "HELLO"
    assert shown_of("$ {'city': inputs['city'], 'n': 2}") == {"city": "Paris", "n": 2}


def test_a_template_hides_only_its_secret_derived_slots() -> None:
    template = compile_template(
        {"url": "$ f'https://x/?k={secrets.k}'", "city": "$ inputs['city']", "n": 1}, "expression"
    )
    rendered = template.evaluate(SCOPE)
    assert containment.shown(rendered.result) == {
        "url": "[REDACTED:k]",
        "city": "Paris",
        "n": 1,
    }
    assert containment.taint_of(rendered.result) == {"k"}
    assert containment.plain(rendered.result) == rendered.value


def test_marks_survive_sealing_slot_by_slot() -> None:
    template = compile_template(["$ secrets.k", "$ input", {"x": "$ len(secrets.pin)"}], "e")
    result = template.evaluate(SCOPE).result
    stored = json.loads(containment.pack(result, sent=["k"]))
    assert stored["value"] == [KEY, "hello", {"x": 5}]
    assert stored["taint"] == [[[0], ["k"]], [[2, "x"], ["pin"]]]
    assert stored["sent"] == ["k"]
    back = containment.unpack(stored)
    assert containment.shown(back) == ["[REDACTED:k]", "hello", {"x": "[REDACTED:pin]"}]
    # a later step reading the clean slot gets a clean value; the marked one stays marked
    later = Scope(secrets={}, previous=back)
    assert compile_expression("$ upper(_[1])").evaluate(later).secrets == frozenset()
    assert compile_expression("$ _[2]['x'] + 1").evaluate(later).secrets == {"pin"}
    assert compile_expression("$ _").evaluate(later).secrets == {"k", "pin"}


def test_results_sealed_before_slot_wise_marks_are_read_as_marked_whole() -> None:
    back = containment.unpack({"value": ["a", "b"], "secrets": ["k"]})
    assert back == Tainted(["a", "b"], frozenset({"k"}))
    assert containment.unpack({"value": 3, "secrets": []}) == 3


@pytest.mark.parametrize(
    "text",
    [
        "int(secrets.pair)",  # why it failed would say it is not a number
        "secrets.k[100]",  # ... how long it is
        "1 / (len(secrets.k) - 23)",  # ... its exact length
        "json_loads(secrets.k)",  # ... where it stops being JSON
        "get(json_loads('{}'), 1) + secrets.k",
        "b64decode(secrets.k)",
    ],
)
def test_an_error_after_reading_a_secret_says_only_that_it_failed(text: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_expression("$ " + text).evaluate(SCOPE)
    message = str(raised.value)
    assert "withheld" in message
    assert "column" not in message and "index" not in message and "convert" not in message


def test_an_error_before_any_secret_keeps_its_reason() -> None:
    with pytest.raises(ExpressionError, match="division by zero"):
        compile_expression("$ 1 / 0").evaluate(SCOPE)


def test_a_failed_lookup_in_a_partly_marked_container_is_withheld() -> None:
    """Whether a key exists in a result that holds a secret-derived part can say
    something about that part (a dict keyed by a secret's characters)."""
    marked = {"a": Tainted({"g": 1}, frozenset({"k"}))}
    scope = Scope(secrets={}, previous=marked)
    with pytest.raises(ExpressionError, match="withheld"):
        compile_expression("$ _['a']['h']").evaluate(scope)


def test_a_bare_secret_is_known_as_such() -> None:
    assert compile_expression("$ secrets.k").bare_secret == "k"
    assert compile_expression("$ secrets['k']").bare_secret == "k"
    assert compile_expression("$ lower(secrets.k)").bare_secret is None
    assert compile_expression("$ f'{secrets.k}'").bare_secret is None


@pytest.mark.parametrize(
    ("location", "slots", "expected"),
    [
        ("url", ("url", "headers.*"), True),
        ("headers.Authorization", ("url", "headers.*"), True),
        ('headers["X-Api-Key"]', ("url", "headers.*"), True),
        ("headers", ("url", "headers.*"), False),
        ("json.token", ("url", "headers.*"), False),
        ("connection.password", ("connection.*",), True),
        ("connection.nested.password", ("connection.*",), False),
        ("params[0]", ("connection.*",), False),
    ],
)
def test_credential_slots(location: str, slots: tuple[str, ...], expected: bool) -> None:
    assert in_slot(location, slots) is expected


def uses_of(
    arguments: dict[str, Any], tool: str, operation: str, secret_name: str | None = None
) -> SecretUses:
    template = compile_template(arguments, "steps[0].arguments")
    rendered = template.evaluate(SCOPE)
    op = REGISTRY.operation(tool, operation)
    assert op is not None
    return classify(secret_name, template, rendered, op.credentials, op.echoed)


def test_a_bare_secret_in_a_credential_slot_authorises_anything_else_is_data() -> None:
    uses = uses_of(
        {
            "url": "$ f'https://api.example.com/?q={secrets.pin}'",
            "headers": {"Authorization": "$ secrets.k", "X-Other": "$ lower(secrets.hex)"},
            "json": {"token": "$ secrets.pair"},
        },
        "http",
        "request",
        secret_name="k",
    )
    assert uses.credential == {"k"}
    assert uses.data == {"pin", "hex", "pair"}
    db = uses_of(
        {
            "query": "SELECT lower(%s)",
            "params": ["$ secrets.k"],
            "connection": {
                "host": "db.example",
                "user": "$ secrets.pair",
                "password": "$ secrets.pin",
            },
        },
        "database",
        "query",
    )
    assert db.credential == {"pair", "pin"}
    assert db.data == {"k"}
    # a prompt is data whatever it holds
    chat = uses_of(
        {"model": "m", "messages": [{"role": "user", "content": "$ secrets.k"}]}, "openai", "chat"
    )
    assert chat.credential == frozenset() and chat.data == {"k"}


def test_an_answer_is_marked_by_every_data_use_whatever_the_policy() -> None:
    uses = SecretUses(credential=frozenset({"c"}), data=frozenset({"a", "b"}))
    # a destination that is sent a value can answer with any function of it: a usage
    # policy limits where the value goes, never that the answer may be shown
    assert answer_taint(uses) == {"a", "b"}
    # a credential too long to be scanned for in the answer marks it instead
    assert answer_taint(uses, unscannable={"c"}) == {"a", "b", "c"}


def test_a_secret_that_is_the_address_marks_the_answer() -> None:
    uses = uses_of({"url": "$ secrets.k", "headers": {"X-Key": "$ secrets.pin"}}, "http", "request")
    assert uses.credential == {"k", "pin"} and uses.data == frozenset()
    assert uses.echoed == {"k"}  # the upstream may quote its own path back
    assert answer_taint(uses) == {"k"}


def test_the_redactor_names_the_secrets_a_text_holds() -> None:
    redactor = Redactor([(KEY, "k"), ("other-value-1", "o")])
    assert redactor.names_in(f"x {KEY.upper()} y") == frozenset()  # not a form it knows
    assert redactor.names_in(f"x {KEY} y") == {"k"}
    assert redactor.names_in(json.dumps({"a": ["other-value-1"]})) == {"o"}
    assert redactor.names_in("nothing") == frozenset()
