"""Conditions and `=` expressions: a small, safe language checked at load time.

Written like Python (`tier == "gold" and open("office")`), parsed with `ast`,
and only a short list of node types and functions is allowed, so a flow can
never run code. Unknown names evaluate to null, so a variable that was never
set is simply empty.
"""

from __future__ import annotations

import ast
import functools
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_BOOL_OPS = {ast.And, ast.Or}
_CMP_OPS = {ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn}
_BIN_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
            ast.Mult: lambda a, b: a * b, ast.Mod: lambda a, b: a % b}
_CONSTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}

# Functions a flow may call, with their number of arguments (min, max).
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    "open": (1, 1, 'open("office"): true while the named opening hours are open'),
    "time_between": (2, 3, 'time_between("08:00", "18:00", "Europe/London"): the local time is in the range'),
    "weekday": (0, 1, 'weekday("Europe/London"): mon, tue, ... sun'),
    "matches": (2, 2, 'matches(caller, "^\\+44"): a regular expression search'),
    "starts_with": (2, 2, 'starts_with(caller, "+44")'),
    "len": (1, 1, "len(account): number of characters"),
    "int": (1, 1, 'int("42"): a number from text (null when it is not one)'),
    "lower": (1, 1, "lower(name)"),
    "defined": (1, 1, 'defined("account"): the variable has a value'),
}


class ExprError(Exception):
    """A condition that is not valid; `col` is 1-based within the expression."""

    def __init__(self, message: str, col: int = 1, hint: str | None = None):
        super().__init__(message)
        self.message, self.col, self.hint = message, col, hint


@dataclass
class Expr:
    """A checked expression with the variable names it reads."""

    source: str
    tree: ast.expression
    names: set[str] = field(default_factory=set)
    hours: set[str] = field(default_factory=set)  # opening-hours names passed to open()
    pos: Any = field(default=None, compare=False)  # where the flow wrote it (set by the loader)

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


def compile_expr(source: str) -> Expr:
    """Parse and check an expression; raises ExprError with a column."""
    text, tree, names, hours = _compiled(source)
    return Expr(text, tree, set(names), set(hours))


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> tuple[str, ast.expression, frozenset[str], frozenset[str]]:
    # Big flows repeat the same conditions; parsing each text once keeps validation fast.
    # The tree is never mutated after checking, so sharing it is safe.
    text = source.strip()
    lead = len(source) - len(source.lstrip())  # columns count from `source` as written
    try:
        with warnings.catch_warnings():
            # "\+" in a regular expression is meant for the regex, not for Python.
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        # Python gives offset 0 when the text ended too early ("x ==", "1 +"):
        # point at its last character, where something is missing.
        col = min(exc.offset or len(text), len(text)) or 1
        hint = "compare with == (not =)" if re.search(r"[^=!<>]=[^=]", text) else None
        raise ExprError(f"syntax error in condition: {exc.msg}", col + lead, hint) from None
    out = Expr(text, tree)
    try:
        _check(tree.body, out)
    except ExprError as exc:
        exc.col += lead
        raise
    return text, tree, frozenset(out.names), frozenset(out.hours)


def _check(node: ast.AST, out: Expr) -> None:
    col = getattr(node, "col_offset", 0) + 1
    if isinstance(node, ast.BoolOp) and type(node.op) in _BOOL_OPS:
        for v in node.values:
            _check(v, out)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        _check(node.operand, out)
    elif isinstance(node, ast.Compare) and all(type(o) in _CMP_OPS for o in node.ops):
        _check(node.left, out)
        for c in node.comparators:
            _check(c, out)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        _check(node.left, out)
        _check(node.right, out)
    elif isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        pass
    elif isinstance(node, ast.Name):
        if node.id not in _CONSTS:
            out.names.add(node.id)
    elif isinstance(node, (ast.List, ast.Tuple)):
        for e in node.elts:
            _check(e, out)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            import difflib
            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            raise ExprError(f"unknown function {name!r}", col,
                            f"did you mean {close[0]!r}?" if close else "functions: " + ", ".join(FUNCTIONS))
        lo, hi, usage = FUNCTIONS[node.func.id]
        if node.keywords or not lo <= len(node.args) <= hi:
            raise ExprError(f"{node.func.id}() takes {lo}..{hi} argument(s)", col, usage)
        if node.func.id == "open":
            arg = node.args[0]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise ExprError('open() needs the name of opening hours in quotes', col, 'open("office")')
            out.hours.add(arg.value)
        for a in node.args:
            _check(a, out)
    else:
        what = type(node).__name__
        hint = "use 'and', 'or', 'not'" if isinstance(node, ast.BoolOp) or what in ("BitAnd", "BitOr") else None
        if isinstance(node, ast.Attribute):
            hint = "variables are plain names: write account, not vars.account"
        raise ExprError(f"{what} is not allowed in a condition", col, hint)


class Env:
    """What an expression can see at run time: variables and the clock-based functions."""

    def __init__(self, variables: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]):
        self.variables = variables
        self.functions = functions


def evaluate(expr: Expr, env: Env) -> Any:
    """Evaluate a checked expression. Type mismatches give null rather than an exception."""
    return _eval(expr.tree.body, env)


def _eval(node: ast.AST, env: Env) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTS:
            return _CONSTS[node.id]
        return env.variables.get(node.id)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            val: Any = True
            for v in node.values:
                val = _eval(v, env)
                if not val:
                    return val
            return val
        val = False
        for v in node.values:
            val = _eval(v, env)
            if val:
                return val
        return val
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        if isinstance(node.op, ast.Not):
            return not v
        return -v if isinstance(v, (int, float)) else None
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env)
            if not _compare(op, left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env), _eval(node.right, env)
        try:
            return _BIN_OPS[type(node.op)](a, b)
        except (TypeError, ZeroDivisionError):
            return None
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Call):
        fn = env.functions[node.func.id]  # type: ignore[union-attr]
        args = [node.args[0].value] if node.func.id == "defined" and isinstance(node.args[0], ast.Constant) \
            else [_eval(a, env) for a in node.args]
        try:
            return fn(*args)
        except (TypeError, ValueError, re.error):
            return None
    raise ExprError(f"cannot evaluate {type(node).__name__}")  # pragma: no cover - checked at load


def _compare(op: ast.cmpop, a: Any, b: Any) -> bool:
    # Numbers typed by a caller arrive as text: compare "42" with 42 as numbers.
    if isinstance(a, str) and isinstance(b, (int, float)) and not isinstance(b, bool):
        a = _num(a)
    elif isinstance(b, str) and isinstance(a, (int, float)) and not isinstance(a, bool):
        b = _num(b)
    try:
        if isinstance(op, ast.Eq):
            return a == b
        if isinstance(op, ast.NotEq):
            return a != b
        if isinstance(op, ast.In):
            return a in b if b is not None else False
        if isinstance(op, ast.NotIn):
            return a not in b if b is not None else True
        if a is None or b is None:
            return False
        if isinstance(op, ast.Lt):
            return a < b
        if isinstance(op, ast.LtE):
            return a <= b
        if isinstance(op, ast.Gt):
            return a > b
        return a >= b
    except TypeError:
        return False


def _num(s: str) -> Any:
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def basic_functions(variables: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    """The functions that need no clock (the runner adds open/time_between/weekday)."""
    def to_int(x):
        try:
            return int(str(x))
        except (TypeError, ValueError):
            return None
    return {
        "matches": lambda s, rx: s is not None and re.search(rx, str(s)) is not None,
        "starts_with": lambda s, p: s is not None and str(s).startswith(str(p)),
        "len": lambda s: len(s) if s is not None else 0,
        "int": to_int,
        "lower": lambda s: str(s).lower() if s is not None else None,
        "defined": lambda name: variables.get(name) not in (None, ""),
    }


# ---- templates: "Your balance is {balance}" ---------------------------------

_TEMPLATE = re.compile(r"\{([^{}]*)\}")
TEMPLATE_FORMATS = ("digits", "spell")


def template_fields(text: str) -> list[tuple[str, str, int]]:
    """(name, format, offset) of each `{name}` or `{name:format}` in a prompt text."""
    out = []
    for m in _TEMPLATE.finditer(text):
        name, _, fmt = m.group(1).partition(":")
        out.append((name.strip(), fmt.strip(), m.start()))
    return out


def render_template(text: str, variables: Mapping[str, Any]) -> str:
    """Fill `{name}` places; `{x:digits}` reads a number digit by digit."""
    def sub(m: re.Match) -> str:
        name, _, fmt = m.group(1).partition(":")
        val = variables.get(name.strip())
        s = "" if val is None else str(val)
        if fmt.strip() in TEMPLATE_FORMATS:
            s = " ".join(ch for ch in s if not ch.isspace())
        return s
    return _TEMPLATE.sub(sub, text)
