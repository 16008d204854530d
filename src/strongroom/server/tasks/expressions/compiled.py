"""A compiled ``$ `` expression: parsed and checked once, evaluated per run.

Compiling is where a task's expressions are refused (at task creation) and where what
they read is learnt: :attr:`Expression.secret_refs` is the only secrets a run will fetch.
Short texts are cached per process, since the same steps run again and again.
"""

from __future__ import annotations

import ast
import functools
from typing import Final

from .budget import DEFAULT_LIMITS, Budget, Limits
from .errors import ExpressionError
from .evaluate import Evaluation, Scope
from .syntax import PREFIX, check, is_expression, parse
from .taint import Tainted


class Expression:
    """A ``$ `` expression, parsed and checked once, evaluated per run (immutable)."""

    __slots__ = ("bare_secret", "body", "limits", "names", "secret_refs", "source", "text")

    def __init__(self, text: str, limits: Limits = DEFAULT_LIMITS) -> None:
        source = text.removeprefix(PREFIX).strip()
        if not source:
            raise ExpressionError("empty expression")
        body = parse(source, limits)
        reads = check(body, limits)
        self.text = text
        self.source = source
        self.limits = limits
        self.secret_refs: frozenset[str] = reads.secrets
        self.names: frozenset[str] = reads.names
        # ``secrets.x`` alone: the value as it is, which a tool may take as a credential
        self.bare_secret: str | None = _bare_secret(body)
        self.body: ast.expr = body  # the checked tree, run by an Evaluation

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def evaluate(self, scope: Scope, *, timeout: float | None = None) -> Tainted:
        """The value and the secrets it derives from; ``ExpressionError`` if refused or late."""
        return Evaluation(scope, Budget(self.limits, timeout)).run(self.body)


def _bare_secret(body: ast.expr) -> str | None:
    """The secret's name when the expression is only ``secrets.x`` or ``secrets['x']``."""
    match body:
        case ast.Attribute(value=ast.Name(id="secrets"), attr=name):
            return name
        case ast.Subscript(value=ast.Name(id="secrets"), slice=ast.Constant(value=str(name))):
            return name
    return None


# A tree takes ~200 bytes per character of text: cache the short texts steps are made of
# (at most ~50 MB), and compile long ones afresh (a few ms) rather than let them fill memory.
_CACHED_LENGTH: Final = 1_000


@functools.lru_cache(maxsize=256)
def _compile(text: str, limits: Limits) -> Expression:
    return Expression(text, limits)


def compile_expression(text: str, limits: Limits = DEFAULT_LIMITS) -> Expression:
    """Parse and check ``text`` (``"$ ..."``); a short text compiles once per process."""
    if not is_expression(text):
        raise ExpressionError(f"an expression starts with {PREFIX!r}")
    return _compile(text, limits) if len(text) <= _CACHED_LENGTH else Expression(text, limits)
