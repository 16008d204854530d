"""``$ `` expressions in task steps: a small allowlist evaluator over Python's ``ast``.

A string that starts with ``"$ "`` is an expression wherever it appears in a step's
``expression``, ``input`` or ``arguments``; other strings are literals. Expressions read a
fixed scope (``secrets``, ``input``, ``inputs``, ``outputs``, ``steps``, ``_``) and can use
literals, f-strings, lookups on mappings and sequences, slices, arithmetic, comparisons,
``and``/``or``/``not``, ``a if c else b`` and calls to the helpers in ``HELPERS`` (``len,
str, int, float, bool, lower, upper, strip, startswith, endswith, join, split, replace,
json_dumps, json_loads, urlencode, quote, b64encode, b64decode, min, max, abs, round,
get``). Nothing else: no attribute access on live objects (``x.y`` is the lookup
``x['y']`` on a mapping; ``'a'.upper()`` is refused, ``upper('a')`` is the way), no
lambdas, comprehensions, assignments or starred arguments. We do not use simpleeval or
asteval: the first ran ``4000000**4000000`` for 30 s, the second exposes ``open()``.

Use, at task creation and then per run::

    template = compile_template(step["arguments"], "arguments")   # raises InvalidTemplate
    template.secret_refs              # frozenset of secret names: fetch only these
    rendered = template.evaluate(Scope(secrets=fetched, input=..., outputs=..., previous=...))
    rendered.value, rendered.secrets  # the arguments, and the secrets they derive from
    rendered.parts                    # each expression's own Tainted result, by location
    rendered.result                   # the value with each secret-derived slot Tainted

Public API:

- ``is_expression(value) -> bool``
- ``compile_expression(text, limits=DEFAULT_LIMITS) -> Expression`` (cached if short; the text
  includes the ``$ `` prefix) with ``.secret_refs``, ``.names`` and
  ``.evaluate(scope, *, timeout=None) -> Tainted``.
- ``find_expressions(value, location="") -> Iterator[(location, text)]``: every expression in
  a JSON-shaped value, at paths like ``arguments.messages[0].content``.
- ``compile_template(value, location="", limits=DEFAULT_LIMITS) -> Template``: compiles every
  expression, raising ``InvalidTemplate`` whose ``.errors`` hold one ``ExpressionError`` per
  bad location. ``Template.evaluate(scope, *, timeout=None) -> Rendered``.
- ``Scope(secrets, input, inputs, outputs, steps, previous)``; ``previous`` is ``_``.
  ``secrets`` is a ``Mapping[str, str]`` or a callable ``name -> value`` raising ``KeyError``
  when absent; only referenced names are read, each once per evaluation, and time spent
  there does not count against the deadline. Other scope values are JSON-like (None, bool,
  int, float, str, list, tuple, any Mapping) and may hold ``Tainted`` at any depth.
- ``Tainted(value, secrets)``: results are returned as ``Tainted``, and an engine puts them
  back into later scopes unchanged, so taint is carried across steps. Taint is conservative:
  a result carries every secret any evaluated operand derived from (a condition included).
- ``ExpressionError(message, location)``: the one error type (``InvalidTemplate`` and
  ``WithheldError`` are subclasses). Messages may quote the expression text but never a
  value; once an evaluation has read a secret-derived value, an error says only that it
  failed (``WithheldError``), since its reason could describe the value.
- ``Expression.bare_secret``: the name when the expression is ``secrets.x`` alone (a tool
  may take it as a credential, see ``containment.classify``).
- ``Limits``: the bounds, see ``budget.Limits``.

Decisions:

- ``secrets`` may only be read with a constant name (``secrets.x``, ``secrets['x']``); a
  dynamic lookup (``secrets[input]``) or the bare mapping is refused when the task is
  created, so the secrets a task can touch are known up front and nothing else is decrypted.
- Before parsing, the text's length, bracket depth and operator count are bounded on tokens,
  so the C parser cannot be driven deep; after parsing, the tree's depth is bounded again
  before anything walks it recursively.
- Every evaluation has a deadline checked at each node and while scanning values. Steps that
  could be expensive are bounded before they run: ``**`` by the result's bits, repetition by
  the result's size, f-string widths and precisions, helpers by their output size, and any
  container built by its size counting shared parts (so ``[[0]*1000]*1000`` is refused and
  a later ``==`` or ``json_dumps`` on it cannot take long).
- Results may share parts with scope values; tuples stay tuples.

The package, by concept: ``syntax`` (the prefix; bounding, parsing and checking the text),
``compiled`` (``Expression``), ``template`` (expressions inside JSON values), ``evaluate``
(running a tree over a ``Scope``), ``budget`` (``Limits`` and the meter of time and size),
``helpers`` (the fixed table of pure functions), ``taint`` (``Tainted``) and ``errors``.
"""

from __future__ import annotations

from .budget import DEFAULT_LIMITS, Limits
from .compiled import Expression, compile_expression
from .errors import ExpressionError, WithheldError
from .evaluate import Scope, SecretSource
from .helpers import HELPERS
from .syntax import PREFIX, SCOPE_NAMES, is_expression
from .taint import Tainted
from .template import InvalidTemplate, Rendered, Template, compile_template, find_expressions

__all__ = [
    "DEFAULT_LIMITS",
    "HELPERS",
    "PREFIX",
    "SCOPE_NAMES",
    "Expression",
    "ExpressionError",
    "InvalidTemplate",
    "Limits",
    "Rendered",
    "Scope",
    "SecretSource",
    "Tainted",
    "Template",
    "WithheldError",
    "compile_expression",
    "compile_template",
    "find_expressions",
    "is_expression",
]
