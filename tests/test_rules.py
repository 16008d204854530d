"""Resource rules on their own: glob matching, and the containment check key issuance
relies on (a key may only issue keys whose globs lie within its own)."""

from __future__ import annotations

import itertools

import pytest

from strongroom.server.rules import ResourceRule, RuleError, glob_match, glob_within

NAMES = ["".join(p) for length in range(5) for p in itertools.product("ab", repeat=length)]
GLOBS = ["".join(p) for length in range(4) for p in itertools.product("ab*?", repeat=length)]


def test_within_is_sound_for_every_small_glob_pair() -> None:
    """Whenever ``glob_within`` says yes, every name the inner glob matches, the outer one
    matches too: else a scoped admin could mint a key reaching beyond its own."""
    for inner, outer in itertools.product(GLOBS, GLOBS):
        if glob_within(inner, outer):
            for name in NAMES:
                if glob_match(name, inner):
                    assert glob_match(name, outer), (inner, outer, name)


@pytest.mark.parametrize(
    ("inner", "outer", "within"),
    [
        ("ci_deploy_*", "ci_*", True),
        ("ci_?", "ci_*", True),
        ("ci_*", "ci_*", True),
        ("anything", "*", True),
        ("c*", "ci_*", False),
        ("ci_*", "ci_?", False),
        ("*", "ci_*", False),
        ("ci_a", "ci_b", False),
    ],
)
def test_within_answers_the_cases_people_write(inner: str, outer: str, within: bool) -> None:
    assert glob_within(inner, outer) is within


def test_glob_match_is_exact_about_case_and_length() -> None:
    assert glob_match("ci_x", "ci_*") and not glob_match("CI_x", "ci_*")
    assert glob_match("abc", "a?c") and not glob_match("ac", "a?c")
    assert glob_match("a" * 128, "*a*a*a*a*a*a*a*a") and not glob_match("a" * 128, "*a*b")


def test_rule_within_keeps_the_selector() -> None:
    staging_ci = ResourceRule(("ci_*",), {"environment": "staging"})
    assert ResourceRule(("ci_x",), {"environment": "staging", "team": "a"}).within(staging_ci)
    assert not ResourceRule(("ci_x",)).within(staging_ci)
    assert not ResourceRule(("ci_x",), {"environment": "production"}).within(staging_ci)
    # a selector of 1 and of 1.0 is the same JSON value
    assert ResourceRule(("x",), {"n": 1.0}).within(ResourceRule(metadata={"n": 1}))


@pytest.mark.parametrize(
    ("given", "location"),
    [
        ({}, ""),
        ({"names": ["ci/*"]}, "names[0]"),
        ({"names": ["a b"]}, "names[0]"),
        ({"names": ["x"] * 17}, "names"),
        ({"metadata": {"k": {"nested": 1}}}, "metadata.k"),
        ({"metadata": {"": "v"}}, "metadata"),
        ({"paths": ["x"]}, "paths"),
    ],
)
def test_a_bad_rule_is_refused_where_it_is_wrong(given: dict[str, object], location: str) -> None:
    with pytest.raises(RuleError) as refused:
        ResourceRule.parse(given)
    assert refused.value.location == location
