"""A safe evaluator for SVAMP answers: arithmetic on numbers only, parsed with ``ast``.
Never ``eval`` on model text."""
from __future__ import annotations

import ast
import math
import operator
import warnings
from typing import Optional

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UN = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_LEN = 512


def safe_eval(expr: str) -> Optional[float]:
    """Value of an arithmetic expression like ``( 84.0 / 2.0 )`` or ``-3``, or None if it is not one
    (or divides by zero, or is absurdly large)."""
    if expr is None:
        return None
    expr = expr.strip().replace("×", "*").replace("÷", "/").replace("−", "-").replace(",", "")
    if not expr or len(expr) > MAX_LEN:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning on "2x" in model text
            tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError):
        return None
    try:
        v = _ev(tree.body, 0)
        if v is None or isinstance(v, complex):
            return None
        v = float(v)  # an int too large for a float overflows here
    except (ZeroDivisionError, OverflowError, ValueError, TypeError, RecursionError):
        return None
    return v if math.isfinite(v) else None


def _ev(node, depth):
    if depth > 50:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _ev(node.left, depth + 1), _ev(node.right, depth + 1)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 1e6):
            return None
        return _BIN[type(node.op)](a, b)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UN:
        a = _ev(node.operand, depth + 1)
        return None if a is None else _UN[type(node.op)](a)
    return None


def same_value(a: Optional[float], b: Optional[float]) -> bool:
    if a is None or b is None:
        return False
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
