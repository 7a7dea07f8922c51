"""Derived features declared at import time, e.g. ``income_per_age=income/age``.

An expression is arithmetic (+ - * /, parentheses, unary minus, numeric constants) over numeric
columns; a column whose name is not a Python identifier is written in backticks. It is parsed
with ``ast`` and evaluated column-wise with Arrow compute, never with ``eval``. A division by
zero, or any other non-finite result, gives a missing value rather than an error or infinity.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from enrichment.crm.errors import CrmError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_BACKTICK_RE = re.compile(r"`([^`]+)`")
_NULL = pa.scalar(None, pa.float64())


@dataclass(frozen=True)
class Derived:
    name: str
    expression: str
    columns: tuple[str, ...]
    tree: ast.expr

    def describe(self) -> dict:
        return {"name": self.name, "expression": self.expression, "columns": list(self.columns)}


def parse_derive(spec: str) -> Derived:
    """``name=expression`` -> Derived; a clear CrmError for anything else."""
    name, sep, expression = spec.partition("=")
    name, expression = name.strip(), expression.strip()
    if not sep or not expression:
        raise CrmError(
            f"derived feature {spec.strip()!r} must look like name=expression, e.g. income_per_age=income/age"
        )
    if not NAME_RE.match(name):
        raise CrmError(
            f"derived feature name {name!r} must be letters, digits and _ (not starting with a digit)"
        )
    quoted: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        key = f"__col{len(quoted)}"
        quoted[key] = match.group(1)
        return key

    try:
        tree = ast.parse(_BACKTICK_RE.sub(placeholder, expression), mode="eval").body
    except SyntaxError as err:
        raise CrmError(
            f"derived feature {name!r}: cannot parse {expression!r} ({err.msg})"
        ) from err
    columns: list[str] = []
    tree = _check(tree, name, quoted, columns)
    return Derived(name, expression, tuple(dict.fromkeys(columns)), tree)


def parse_derive_options(items: list[str] | tuple[str, ...] | None) -> list[Derived]:
    """Each item is one ``name=expr`` or several separated by commas or semicolons."""
    out: list[Derived] = []
    for item in items or ():
        out.extend(parse_derive(part) for part in re.split(r"[;,]", item) if part.strip())
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise CrmError(
            f"derived feature names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}"
        )
    return out


_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div)


def _check(node: ast.expr, name: str, quoted: dict[str, str], columns: list[str]) -> ast.expr:
    if isinstance(node, ast.BinOp) and isinstance(node.op, _OPS):
        node.left = _check(node.left, name, quoted, columns)
        node.right = _check(node.right, name, quoted, columns)
        return node
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node.operand = _check(node.operand, name, quoted, columns)
        return node
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node
    if isinstance(node, ast.Name):
        column = quoted.get(node.id, node.id)
        columns.append(column)
        return ast.Name(id=column, ctx=ast.Load())
    raise CrmError(
        f"derived feature {name!r}: only numeric columns, numbers, + - * / and parentheses are allowed "
        f"(found {ast.unparse(node)!r})"
    )


def check_columns(derived: list[Derived], kinds: dict[str, str]) -> None:
    """Every referenced column exists and is numeric; names do not collide with columns."""
    for d in derived:
        if d.name in kinds:
            raise CrmError(f"derived feature {d.name!r} has the name of an existing column")
        for column in d.columns:
            if column not in kinds:
                raise CrmError(
                    f"derived feature {d.name!r} uses column {column!r}, which the file does not have"
                )
            if kinds[column] != "numeric":
                raise CrmError(
                    f"derived feature {d.name!r} uses column {column!r}, which is {kinds[column]}, not numeric "
                    f"(declare it with --types {column}=numeric if it holds numbers)"
                )


def compute(d: Derived, columns: dict[str, pa.Array]) -> pa.Array:
    """The feature for one batch (float64; missing where any input is missing or the result is not finite)."""
    values = _eval(d.tree, columns)
    if isinstance(values, pa.Scalar):  # a constant expression
        length = len(next(iter(columns.values()))) if columns else 0
        values = pa.array([values.as_py()] * length, type=pa.float64())
    values = pc.cast(values, pa.float64())
    return pc.if_else(pc.fill_null(pc.is_finite(values), False), values, _NULL)


def _eval(node: ast.expr, columns: dict[str, pa.Array]) -> pa.Array | pa.Scalar:
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)  # _check let only numbers through
        return pa.scalar(float(node.value), pa.float64())
    if isinstance(node, ast.Name):
        return columns[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, columns)
        return pc.negate(operand) if isinstance(node.op, ast.USub) else operand
    assert isinstance(node, ast.BinOp)
    left, right = _eval(node.left, columns), _eval(node.right, columns)
    if isinstance(node.op, ast.Add):
        return pc.add(left, right)
    if isinstance(node.op, ast.Sub):
        return pc.subtract(left, right)
    if isinstance(node.op, ast.Mult):
        return pc.multiply(left, right)
    zero = pc.equal(right, 0.0)
    return pc.if_else(pc.fill_null(zero, False), _NULL, pc.divide(left, right))
