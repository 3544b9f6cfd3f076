"""Safe expressions for ``condition`` nodes and event triggers: a small subset of Python
parsed with ``ast`` and evaluated by walking the tree. No ``eval``, no calls except a few
whitelisted functions, no attribute access except reading keys of dicts (``motion.level`` is
``inputs["motion"]["level"]``), no comprehensions, no lambdas.

    motion.level > 0.05 and ("EXIT" in ocr.text or len(ocr.words) > 3)
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

MAX_LENGTH = 2000
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "lower": lambda s: str(s).lower(),
    "any": any,
    "all": all,
}
_CONSTANTS = {"true": True, "false": False, "null": None}


class ExpressionError(ValueError):
    pass


class Expression:
    """A parsed expression; ``names`` are the top-level names it reads."""

    def __init__(self, source: str) -> None:
        if not isinstance(source, str) or not source.strip():
            raise ExpressionError("empty expression")
        if len(source) > MAX_LENGTH:
            raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
        try:
            self._tree = ast.parse(source.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ExpressionError(f"syntax error at column {exc.offset}: {exc.msg}") from None
        self.source = source
        self.names: set[str] = set()
        self._check(self._tree)

    def _check(self, node: ast.AST) -> None:
        allowed = (
            ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.BinOp,
            ast.Compare, ast.Constant, ast.Name, ast.Load, ast.Attribute, ast.Subscript,
            ast.List, ast.Tuple, ast.Call, ast.IfExp,
            *_BINARY, *_COMPARE,
        )  # fmt: skip
        if not isinstance(node, allowed):
            raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise ExpressionError(f"only these functions may be called: {sorted(_FUNCTIONS)}")
            if node.keywords:
                raise ExpressionError("keyword arguments are not allowed")
            for arg in node.args:
                self._check(arg)
            return
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"'{node.attr}': names starting with _ are not allowed")
        if isinstance(node, ast.Name) and node.id not in _CONSTANTS:
            self.names.add(node.id)
        for child in ast.iter_child_nodes(node):
            self._check(child)

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        try:
            return _eval(self._tree, names)
        except ExpressionError:
            raise
        except Exception as exc:  # TypeError, KeyError, ZeroDivisionError, ...
            raise ExpressionError(f"{type(exc).__name__}: {exc}") from None


def _eval(node: ast.AST, names: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            if name in _CONSTANTS:
                return _CONSTANTS[name]
            if name not in names:
                raise ExpressionError(f"unknown name {name!r}")
            return names[name]
        case ast.Attribute(value=value, attr=attr):
            return _item(_eval(value, names), attr)
        case ast.Subscript(value=value, slice=index):
            return _item(_eval(value, names), _eval(index, names))
        case ast.BoolOp(op=ast.And(), values=values):
            result: Any = True
            for v in values:
                result = _eval(v, names)
                if not result:
                    return result
            return result
        case ast.BoolOp(op=ast.Or(), values=values):
            result = False
            for v in values:
                result = _eval(v, names)
                if result:
                    return result
            return result
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _eval(operand, names)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand, names)
        case ast.BinOp(left=left, op=op, right=right):
            a, b = _eval(left, names), _eval(right, names)
            if isinstance(op, ast.Mult) and any(isinstance(v, str | list) for v in (a, b)):
                raise ExpressionError("repeating strings or lists is not allowed")
            return _BINARY[type(op)](a, b)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _eval(left, names)
            for cmp, comp in zip(ops, comparators, strict=True):
                right = _eval(comp, names)
                if not _COMPARE[type(cmp)](current, right):
                    return False
                current = right
            return True
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _eval(body, names) if _eval(test, names) else _eval(orelse, names)
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_eval(e, names) for e in elts]
        case ast.Call(func=ast.Name(id=fname), args=args):
            return _FUNCTIONS[fname](*(_eval(a, names) for a in args))
    raise ExpressionError(f"cannot evaluate {type(node).__name__}")


def _item(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        if key not in container:
            raise ExpressionError(f"no key {key!r} (have {sorted(map(str, container))})")
        return container[key]
    if isinstance(container, list | tuple | str) and isinstance(key, int):
        return container[key]
    raise ExpressionError(f"cannot read {key!r} of a {type(container).__name__}")
