"""Safe expressions for ``condition`` nodes and event triggers: a small subset of Python
parsed with ``ast`` and evaluated by walking the tree. No ``eval``, no calls except a few
whitelisted functions, no attribute access except reading keys of dicts (``motion.level`` is
``inputs["motion"]["level"]``), no comprehensions, no lambdas.

    motion.level > 0.05 and ("EXIT" in ocr.text or len(ocr.words) > 3)

An expression must not be able to hold the event loop or exhaust memory, and a single C-level
operation (``round(1, -10**20)``, ``b"x" * 10**9``, ``"%0999999999d" % 1``) holds the GIL, so
no timeout can interrupt it. Hence a cost model: the tree is bounded in size and depth, and
every operation that could cost more than its inputs is refused or bounded before it runs
(repetition, %-formatting, big integers, round's digits, long concatenations). What can be seen
in the text is refused when the expression is built, so a flow is rejected at validation;
the rest is refused while evaluating. Evaluation also runs in a thread with a time limit
(``evaluate_in_thread``) as a second line of defence.
"""

from __future__ import annotations

import ast
import asyncio
import operator
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

MAX_LENGTH = 2000
MAX_NODES = 500  # sub-expressions
MAX_DEPTH = 50  # nesting of sub-expressions; also keeps the recursive walks far from the limit
MAX_INT_BITS = 128  # operands and results of integer arithmetic
MAX_BUILT_LENGTH = 100_000  # a string or list made by concatenation
MAX_ROUND_DIGITS = 100
EVAL_TIMEOUT_S = 1.0

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
_SEQUENCES = (str, bytes, bytearray, list, tuple)
_STRINGS = (str, bytes, bytearray)
# A value not known before evaluation: no isinstance() check below matches it.
_UNKNOWN: Any = object()
# Its own threads: in a pool shared with slow blocking work (a VLM call), an expression would
# wait its turn and time out; here only other expressions, each bounded, are ahead of it.
_POOL = ThreadPoolExecutor(4, thread_name_prefix="expr")


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
            tree = ast.parse(source.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ExpressionError(f"syntax error at column {exc.offset}: {exc.msg}") from None
        except (RecursionError, MemoryError):
            # How CPython's parser gives up on some deep nesting, instead of a SyntaxError.
            raise ExpressionError(f"nested more than {MAX_DEPTH} levels deep") from None
        except ValueError as exc:  # e.g. a NUL character
            raise ExpressionError(f"cannot parse: {exc}") from None
        _check_size(tree)
        self._tree = tree
        self.source = source
        self.names: set[str] = set()
        self._check(tree)

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
            _check_call(node.func.id, [_static(a) for a in node.args])
            for arg in node.args:
                self._check(arg)
            return
        if isinstance(node, ast.BinOp):
            _check_operands(node.op, _static(node.left), _static(node.right))
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
        except Exception as exc:  # TypeError, KeyError, ZeroDivisionError, RecursionError, ...
            raise ExpressionError(f"{type(exc).__name__}: {exc}") from None

    async def evaluate_in_thread(
        self, names: Mapping[str, Any], timeout: float = EVAL_TIMEOUT_S
    ) -> Any:
        """``evaluate`` off the event loop; a slow evaluation is an ExpressionError (its thread
        finishes on its own: the cost model bounds it)."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(_POOL, self.evaluate, names), timeout
            )
        except TimeoutError:
            raise ExpressionError(f"took longer than {timeout:g} s") from None


def _check_size(tree: ast.AST) -> None:
    # Iterative: a recursive walk of a deep tree is itself what must not blow up.
    count = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.expr):
            count += 1
            if count > MAX_NODES:
                raise ExpressionError(f"more than {MAX_NODES} terms in the expression")
            if depth > MAX_DEPTH:
                raise ExpressionError(f"nested more than {MAX_DEPTH} levels deep")
        stack += [(c, depth + isinstance(c, ast.expr)) for c in ast.iter_child_nodes(node)]


def _static(node: ast.AST) -> Any:
    """The value of a literal operand, for refusing at validation what evaluation would."""
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name) if name in _CONSTANTS:
            return _CONSTANTS[name]
        case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as value)):
            return -value
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_static(e) for e in elts]
    return _UNKNOWN


def _check_operands(op: ast.operator, a: Any, b: Any) -> None:
    """Refuses, before it runs, an operation whose cost is not bounded by its operands'."""
    if isinstance(op, ast.Mult) and (isinstance(a, _SEQUENCES) or isinstance(b, _SEQUENCES)):
        raise ExpressionError("repeating a string or list (x * n) is not allowed")
    if isinstance(op, ast.Mod) and isinstance(a, _STRINGS):
        # printf-style widths and precisions are unbounded ('%0999999999d' % 1).
        raise ExpressionError("%-formatting of strings is not allowed")
    if (
        isinstance(op, ast.Add)
        and isinstance(a, _SEQUENCES)
        and isinstance(b, _SEQUENCES)
        and len(a) + len(b) > MAX_BUILT_LENGTH
    ):
        raise ExpressionError(f"concatenation longer than {MAX_BUILT_LENGTH}")
    for v in (a, b):
        if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:
            raise ExpressionError(f"integer arithmetic is limited to {MAX_INT_BITS} bits")
    if (
        isinstance(op, ast.Mult)
        and isinstance(a, int)
        and isinstance(b, int)
        and a.bit_length() + b.bit_length() > MAX_INT_BITS
    ):
        raise ExpressionError(f"integer arithmetic is limited to {MAX_INT_BITS} bits")


def _check_call(fname: str, args: list[Any]) -> None:
    # round(x, -n) computes 10**n in C, holding the GIL for as long as n is big.
    if fname == "round" and len(args) == 2:
        digits = args[1]
        if isinstance(digits, int) and abs(digits) > MAX_ROUND_DIGITS:
            raise ExpressionError(f"round() takes at most {MAX_ROUND_DIGITS} digits either way")


def _binary(op: ast.operator, a: Any, b: Any) -> Any:
    _check_operands(op, a, b)
    result = _BINARY[type(op)](a, b)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise ExpressionError(f"integer arithmetic is limited to {MAX_INT_BITS} bits")
    return result


def _eval(node: ast.AST, names: Mapping[str, Any]) -> Any:
    # Each node is evaluated at most once (no loops, no definitions), so the size bound on
    # the tree is also the bound on the number of steps.
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
            return _binary(op, _eval(left, names), _eval(right, names))
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
            values = [_eval(a, names) for a in args]
            _check_call(fname, values)
            return _FUNCTIONS[fname](*values)
    raise ExpressionError(f"cannot evaluate {type(node).__name__}")


def _item(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        if key not in container:
            raise ExpressionError(f"no key {key!r} (have {sorted(map(str, container))})")
        return container[key]
    if isinstance(container, list | tuple | str) and isinstance(key, int):
        return container[key]
    raise ExpressionError(f"cannot read {key!r} of a {type(container).__name__}")
