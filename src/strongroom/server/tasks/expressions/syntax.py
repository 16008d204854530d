"""What a ``$ `` expression may say: the prefix that marks one, and its text, bounded,
parsed and checked once.

:data:`PREFIX` is the one spelling of the marker: a string that starts with it is an
expression wherever a step allows one (tools test arguments with :func:`is_expression`).
``parse`` bounds the text on tokens before the C parser sees it (length, bracket depth,
operator count; Python 3.11 would otherwise recurse on thousands of nested operators and can
overflow a small thread stack), then bounds the tree's depth before anything walks it
recursively. ``check`` walks the tree against the allowlist and returns the secret names and
scope names it reads. The tables here are shared with the evaluator.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .budget import Limits
from .errors import ExpressionError, kind
from .helpers import HELPERS

PREFIX: Final = "$ "
SCOPE_NAMES: Final = frozenset({"secrets", "input", "inputs", "outputs", "steps", "_"})


def is_expression(value: object) -> bool:
    """Whether ``value`` is an expression's text (a string starting with :data:`PREFIX`)."""
    return isinstance(value, str) and value.startswith(PREFIX)


_KEYWORD_OPERATORS = ("not", "and", "or", "if", "else", "lambda", "in", "is", "await", "for")
_OPERATORS = (
    r"\*\*|//|==|!=|<=|>=|:=|<<|>>|[-+*/%<>~&|^@.]|\b(?:" + "|".join(_KEYWORD_OPERATORS) + r")\b"
)
_QUOTED = (
    r"'''[\s\S]*?'''",
    r'"""[\s\S]*?"""',
    r"'(?:\\.|[^'\\\n])*'",
    r'"(?:\\.|[^"\\\n])*"',
)
# The tokens that make the parser recurse, found by one C-speed scan (the tokenize module
# spends ~40 ms on 10,000 characters of short tokens). Strings are matched whole so the
# brackets in them do not count, numbers so their dots do not; an unterminated string is
# scanned as code, which only counts more.
_TOKENS = re.compile(
    r"(?P<string>(?i:[rbuf]{0,2})(?:" + "|".join(_QUOTED) + "))"
    r"|(?P<number>\d[\w.]*)|(?P<open>[(\[{])|(?P<close>[)\]}])"
    r"|(?P<operator>" + _OPERATORS + ")"
)
_FIELD_OPERATORS = re.compile(_OPERATORS)


def _fstring_fields(token: str) -> tuple[int, int]:
    """Bracket depth and operator count inside an f-string's replacement fields.

    The parser parses the fields with the same recursive parser, so they count as if they
    were outside; brackets in the literal text count too, which only errs on refusing.
    """
    depth = peak = brackets = 0
    inside: list[str] = []
    for char in token.replace("{{", ""):  # a doubled "{" is literal; "}}" may close two fields
        if char in "([{":
            depth += 1
            peak = max(peak, depth)
            brackets += 1
            inside.append(" ")
        elif char in ")]}":
            depth = max(depth - 1, 0)
            inside.append(" ")
        elif depth:
            inside.append(char)
    return peak, brackets + len(_FIELD_OPERATORS.findall("".join(inside)))


def _precheck(source: str, limits: Limits) -> None:
    """Bound what the C parser would recurse on: bracket depth, and operators (which nest
    as unary chains, ``**``, ``if``/``else`` and ``lambda`` do) and brackets in all."""
    if len(source) > limits.max_source_length:
        raise ExpressionError(f"expression is longer than {limits.max_source_length} characters")
    depth = operators = 0
    for token in _TOKENS.finditer(source):
        group, text = token.lastgroup, token.group()
        peak = depth
        if group == "open":
            depth += 1
            peak = depth
            operators += 1
        elif group == "close":
            depth -= 1
        elif group == "operator":
            operators += 1
        elif group == "string" and "f" in text[:3].lower().split("'")[0].split('"')[0]:
            inner_depth, inner_operators = _fstring_fields(text)
            peak = depth + inner_depth
            operators += inner_operators
        if peak > limits.max_nesting:
            raise ExpressionError(
                f"expression is nested more than {limits.max_nesting} brackets deep"
            )
        if operators > limits.max_operators:
            raise ExpressionError(
                f"expression has more than {limits.max_operators} operators and brackets"
            )


def _reason(exc: Exception) -> str:
    if isinstance(exc, SyntaxError):
        where = f" (column {exc.offset})" if exc.offset else ""
        return f"{exc.msg}{where}"
    return str(exc.args[0]) if exc.args else type(exc).__name__


def parse(source: str, limits: Limits) -> ast.expr:
    """The syntax tree of ``source``, once its size and depth are known to be safe to walk."""
    _precheck(source, limits)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, Warning) as exc:
        raise ExpressionError(f"syntax error: {_reason(exc)}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression is too complex to parse") from None
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            raise ExpressionError(f"expression is nested more than {limits.max_depth} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree.body


# -- what is allowed -----------------------------------------------------------------------------

BINARY: Final[Mapping[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
}
UNARY: Final[Mapping[type[ast.unaryop], tuple[str, Callable[[Any], Any]]]] = {
    ast.UAdd: ("+", operator.pos),
    ast.USub: ("-", operator.neg),
    ast.Not: ("not", operator.not_),
    ast.Invert: ("~", operator.invert),
}
COMPARE: Final[Mapping[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
_REFUSED: Final[Mapping[type[ast.AST], str]] = {
    ast.Lambda: "lambda functions are not allowed in expressions",
    ast.ListComp: "comprehensions are not allowed in expressions",
    ast.SetComp: "comprehensions are not allowed in expressions",
    ast.DictComp: "comprehensions are not allowed in expressions",
    ast.GeneratorExp: "comprehensions are not allowed in expressions",
    ast.NamedExpr: "assignment expressions (:=) are not allowed in expressions",
    ast.Starred: "starred expressions (*x) are not allowed in expressions",
    ast.Set: "set literals are not supported in expressions",
    ast.Slice: "slices are only allowed directly inside [...]",
    ast.Await: "await is not allowed in expressions",
    ast.Yield: "yield is not allowed in expressions",
    ast.YieldFrom: "yield is not allowed in expressions",
}
# Nodes whose value can never be a mapping: attribute access on them is refused up front.
_NEVER_MAPPINGS = (ast.Constant, ast.JoinedStr, ast.List, ast.Tuple, ast.Set, ast.BinOp,
                   ast.UnaryOp, ast.Compare)  # fmt: skip
ONLY_MAPPINGS = (
    "attribute access is only allowed on mappings (secrets, inputs, outputs, steps[i], _ "
    "and values read from them); call a helper instead, like upper(x)"
)
_SECRETS_BY_NAME = (
    "secrets can only be read by a constant name, like secrets.api_key or "
    "secrets['api_key']; dynamic lookups are refused so a task's secrets are known when it "
    "is created"
)
CONVERSIONS: Final[Mapping[int, tuple[str, Callable[[Any], str]]]] = {
    ord("s"): ("str", str),
    ord("r"): ("repr", repr),
    ord("a"): ("ascii", ascii),
}
FORMAT_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?",
    re.DOTALL,
)


def is_secrets(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "secrets"


def describe(node: ast.expr) -> str:
    """The expression text of ``node``, short enough for a message."""
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    """Walks a parsed tree once, refusing what is not allowed and noting what it reads."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.secrets: set[str] = set()
        self.names: set[str] = set()

    def check(self, node: ast.AST) -> None:
        match node:
            case ast.Constant(value=value):
                if isinstance(value, int) and value.bit_length() > self.limits.max_int_bits:
                    raise ExpressionError(
                        f"integer literal is larger than {self.limits.max_int_bits} bits"
                    )
                if value is not None and not isinstance(value, str | int | float):
                    raise ExpressionError(f"{kind(value)} literals are not supported")
            case ast.Name(id=name):
                self._name(name)
            case ast.Attribute(value=base, attr=attr):
                if attr.startswith("__"):
                    raise ExpressionError(
                        f"attribute {attr!r} is refused: attributes are mapping lookups, and "
                        "names starting with '__' are not allowed"
                    )
                if is_secrets(base):
                    self._secret(attr)
                elif isinstance(base, _NEVER_MAPPINGS):
                    raise ExpressionError(ONLY_MAPPINGS)
                else:
                    self.check(base)
            case ast.Subscript(value=base, slice=index):
                if is_secrets(base):
                    if not (isinstance(index, ast.Constant) and isinstance(index.value, str)):
                        raise ExpressionError(_SECRETS_BY_NAME)
                    self._secret(index.value)
                    return
                self.check(base)
                if isinstance(index, ast.Slice):
                    for part in (index.lower, index.upper, index.step):
                        if part is not None:
                            self.check(part)
                else:
                    self.check(index)
            case ast.Call(func=func, args=args, keywords=keywords):
                self._call(func, args, keywords)
            case ast.JoinedStr(values=values):
                for value in values:
                    self.check(value)
            case ast.FormattedValue(value=value, format_spec=spec):
                self.check(value)
                if spec is not None:
                    self.check(spec)
            case ast.List(elts=elements) | ast.Tuple(elts=elements):
                for element in elements:
                    self.check(element)
            case ast.Dict(keys=keys, values=values):
                for key in keys:
                    if key is None:
                        raise ExpressionError("** unpacking is not allowed in expressions")
                    self.check(key)
                for value in values:
                    self.check(value)
            case ast.BinOp(left=left, op=op, right=right):
                if type(op) not in BINARY:
                    raise ExpressionError(
                        f"operator {type(op).__name__} is not allowed; use + - * / // % **"
                    )
                self.check(left)
                self.check(right)
            case ast.UnaryOp(operand=operand):
                self.check(operand)
            case ast.BoolOp(values=values):
                for value in values:
                    self.check(value)
            case ast.Compare(left=first, ops=comparisons, comparators=comparators):
                operands = [first, *comparators]
                for position, comparison in enumerate(comparisons):
                    if isinstance(comparison, ast.Is | ast.IsNot) and not any(
                        isinstance(side, ast.Constant) and isinstance(side.value, bool | None)
                        for side in operands[position : position + 2]
                    ):
                        raise ExpressionError("'is' only compares with None, True or False")
                for operand in operands:
                    self.check(operand)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                for part in (test, body, orelse):
                    self.check(part)
            case _:
                raise ExpressionError(
                    _REFUSED.get(type(node), f"{type(node).__name__} is not allowed in expressions")
                )

    def _name(self, name: str) -> None:
        if name == "secrets":
            raise ExpressionError(_SECRETS_BY_NAME)
        if name in SCOPE_NAMES:
            self.names.add(name)
        elif name in HELPERS:
            raise ExpressionError(f"{name} is a helper: call it, like {name}(x)")
        else:
            raise ExpressionError(
                f"name {name!r} is not defined in expressions; available: "
                + ", ".join(sorted(SCOPE_NAMES))
            )

    def _secret(self, name: str) -> None:
        self.names.add("secrets")
        self.secrets.add(name)

    def _call(self, func: ast.expr, args: list[ast.expr], keywords: list[ast.keyword]) -> None:
        if isinstance(func, ast.Attribute):
            raise ExpressionError(
                f"method calls like .{func.attr}() are not allowed; call a helper instead, "
                "like upper(x)"
            )
        if not isinstance(func, ast.Name):
            raise ExpressionError("only helpers can be called, like upper(x)")
        helper = HELPERS.get(func.id)
        if helper is None:
            raise ExpressionError(
                f"unknown helper {func.id!r}; available: " + ", ".join(sorted(HELPERS))
            )
        if keywords:
            raise ExpressionError(f"{func.id}() takes its arguments by position")
        count = len(args)
        if count < helper.min_args or (helper.max_args is not None and count > helper.max_args):
            raise ExpressionError(f"{func.id}() takes {helper.arity()} ({count} given)")
        for arg in args:
            self.check(arg)


@dataclass(frozen=True, slots=True)
class Reads:
    """What a checked expression reads: secrets by name, and names of the scope."""

    secrets: frozenset[str]
    names: frozenset[str]


def check(body: ast.expr, limits: Limits) -> Reads:
    """Refuse anything outside the allowlist; otherwise say what the expression reads."""
    checker = _Checker(limits)
    checker.check(body)
    return Reads(frozenset(checker.secrets), frozenset(checker.names))
