"""Parameter conditions: the small expression language of the previous system.

``self`` is the parameter's own value, other names are other parameters' values.
Operators, loosest first: ``or``, ``xor``, ``and``, ``== !=``, ``< > <= >=``, ``+ -``,
``* /``, and the prefix operators ``not``, ``-`` and ``#`` (length). Literals: numbers,
double-quoted strings, ``null``, ``true``, ``false``; parentheses group.

An operation on a missing value (null) never raises: comparisons other than ``==`` and
``!=`` are false, arithmetic gives null, and ``#null`` is 0.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.errors import ConfigError

_TOKENS = re.compile(
    r"\s*(?:"
    r"(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r'|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<name>[A-Za-z_][\w\-]*)"
    r"|(?P<op>==|!=|<=|>=|[<>+\-*/#()])"
    r"|(?P<bad>\S)"
    r")"
)

_KEYWORDS = {"and", "or", "xor", "not", "null", "true", "false"}

_BINARY: list[tuple[str, ...]] = [
    ("or",),
    ("xor",),
    ("and",),
    ("==", "!="),
    ("<", ">", "<=", ">="),
    ("+", "-"),
    ("*", "/"),
]


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return False
        try:
            return op(a, b)
        except TypeError:
            return False

    return apply


def _arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        try:
            return op(a, b)
        except (TypeError, ZeroDivisionError):
            return None

    return apply


_APPLY: dict[str, Callable[[Any, Any], Any]] = {
    "or": lambda a, b: bool(a) or bool(b),
    "xor": lambda a, b: bool(a) != bool(b),
    "and": lambda a, b: bool(a) and bool(b),
    "==": operator.eq,
    "!=": operator.ne,
    "<": _compare(operator.lt),
    ">": _compare(operator.gt),
    "<=": _compare(operator.le),
    ">=": _compare(operator.ge),
    "+": _arith(operator.add),
    "-": _arith(operator.sub),
    "*": _arith(operator.mul),
    "/": _arith(operator.truediv),
}


@dataclass(frozen=True)
class _Lit:
    value: Any


@dataclass(frozen=True)
class _Var:
    name: str


@dataclass(frozen=True)
class _Unary:
    op: str
    operand: _Node


@dataclass(frozen=True)
class _Binary:
    op: str
    left: _Node
    right: _Node


_Node = _Lit | _Var | _Unary | _Binary


def _length(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


def _negate(value: Any) -> Any:
    try:
        return -value
    except TypeError:
        return None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        for match in _TOKENS.finditer(text):
            kind = match.lastgroup
            if kind is None:
                continue
            value = match.group(kind)
            if kind == "bad":
                raise ConfigError(f"unexpected {value!r} in condition {text!r}")
            if kind == "name" and value in _KEYWORDS:
                kind = "op" if value in {"and", "or", "xor", "not"} else "const"
            self.tokens.append((kind, value))
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ConfigError(f"condition {self.text!r} ends too early")
        self.position += 1
        return token

    def parse(self) -> _Node:
        if not self.tokens:
            raise ConfigError("a condition cannot be empty")
        node = self.binary(0)
        if self.peek() is not None:
            raise ConfigError(f"unexpected {self.peek()[1]!r} in condition {self.text!r}")  # type: ignore[index]
        return node

    def binary(self, level: int) -> _Node:
        if level == len(_BINARY):
            return self.unary()
        node = self.binary(level + 1)
        while (
            (token := self.peek()) is not None and token[0] == "op" and token[1] in _BINARY[level]
        ):
            self.take()
            node = _Binary(token[1], node, self.binary(level + 1))
        return node

    def unary(self) -> _Node:
        kind, value = self.take()
        if kind == "op" and value in ("not", "-", "#"):
            return _Unary(value, self.unary())
        if kind == "op" and value == "(":
            node = self.binary(0)
            if self.take() != ("op", ")"):
                raise ConfigError(f"missing ')' in condition {self.text!r}")
            return node
        if kind == "number":
            return _Lit(float(value) if any(c in value for c in ".eE") else int(value))
        if kind == "string":
            return _Lit(re.sub(r"\\(.)", r"\1", value[1:-1]))
        if kind == "const":
            return _Lit({"null": None, "true": True, "false": False}[value])
        if kind == "name":
            return _Var(value)
        raise ConfigError(f"unexpected {value!r} in condition {self.text!r}")


def _evaluate(node: _Node, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, _Lit):
        return node.value
    if isinstance(node, _Var):
        return variables.get(node.name)
    if isinstance(node, _Unary):
        value = _evaluate(node.operand, variables)
        if node.op == "not":
            return not value
        if node.op == "#":
            return _length(value)
        return _negate(value)
    left = _evaluate(node.left, variables)
    right = _evaluate(node.right, variables)
    return _APPLY[node.op](left, right)


def _names(node: _Node) -> set[str]:
    if isinstance(node, _Var):
        return {node.name}
    if isinstance(node, _Unary):
        return _names(node.operand)
    if isinstance(node, _Binary):
        return _names(node.left) | _names(node.right)
    return set()


@dataclass(frozen=True)
class Condition:
    text: str
    tree: _Node

    @classmethod
    def parse(cls, text: str) -> Condition:
        return cls(text, _Parser(text).parse())

    @property
    def names(self) -> set[str]:
        return _names(self.tree)

    def evaluate(self, own_value: Any, values: Mapping[str, Any]) -> bool:
        return bool(_evaluate(self.tree, {**values, "self": own_value}))

    def as_json(self) -> Any:
        """The parsed tree as plain JSON, for an evaluator in another language (the web
        pages' script): ``{"lit": v}``, ``{"var": name}``, ``{"op": op, "args": [...]}``."""
        return _tree_json(self.tree)


def _tree_json(node: _Node) -> Any:
    if isinstance(node, _Lit):
        return {"lit": node.value}
    if isinstance(node, _Var):
        return {"var": node.name}
    if isinstance(node, _Unary):
        return {"op": node.op, "args": [_tree_json(node.operand)]}
    return {"op": node.op, "args": [_tree_json(node.left), _tree_json(node.right)]}
