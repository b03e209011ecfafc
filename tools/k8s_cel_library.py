"""Kubernetes CEL library functions that cel-expr-python does not ship, as CEL extension functions.

Kubernetes adds its own libraries to CEL (k8s.io/apiserver/pkg/cel/library); Kyverno's
`validate.cel` uses the same environment. cel-expr-python only has the cel-spec core plus
the optional/strings extensions, so the policies' `quantity()` and `list.sum()` calls are
implemented here with the semantics of

- quantity.go (k8s.io/apiserver/pkg/cel/library/quantity.go, apimachinery resource.Quantity):
  `quantity(string)`, `isQuantity(string)`, `<Quantity>.compareTo(<Quantity>)`,
  `isGreaterThan`, `isLessThan`, `add`/`sub` (Quantity or int), `asInteger()` (error when
  not an integer or out of int64), `isInteger()`, `asApproximateFloat()`, global `sign(<Quantity>)`;
- lists.go: `<list(int)>.sum()`, `min()`, `max()` (sum of an empty list is 0; min/max of an
  empty list is an error).

A Quantity value is represented as a one-key map ``{"__k8s_quantity__": "<num>/<den>"}``
holding the exact rational value, so two equal quantities (``1Gi`` and ``1024Mi``) are
equal maps. Parsing follows resource.ParseQuantity: an optional sign, digits with an
optional decimal point, then a binary suffix (Ki..Ei), a decimal suffix (n, u, m, k, M, G,
T, P, E) or a decimal exponent (e/E followed by an integer); anything else is an error,
exactly as `quantity('16 Gi')` fails in Kubernetes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from cel_expr_python import cel

from components.quantity import QuantityError, parse_quantity

KEY = "__k8s_quantity__"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _wrap(value: Fraction) -> dict[str, str]:
    return {KEY: f"{value.numerator}/{value.denominator}"}


def _unwrap(q: Any) -> Fraction:
    if isinstance(q, dict) and KEY in q:
        return Fraction(q[KEY])
    raise QuantityError(f"not a Quantity: {q!r}")


def _quantity(text: str) -> dict[str, str]:
    return _wrap(parse_quantity(text))


def _is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except QuantityError:
        return False
    return True


def _compare(a: Any, b: Any) -> int:
    x, y = _unwrap(a), _unwrap(b)
    return (x > y) - (x < y)


def _as_integer(q: Any) -> int:
    v = _unwrap(q)
    if v.denominator != 1 or not _INT64_MIN <= v.numerator <= _INT64_MAX:
        raise QuantityError("cannot convert value to integer")
    return v.numerator


def _add(a: Any, b: Any) -> dict[str, str]:
    return _wrap(_unwrap(a) + (Fraction(b) if isinstance(b, int) else _unwrap(b)))


def _sub(a: Any, b: Any) -> dict[str, str]:
    return _wrap(_unwrap(a) - (Fraction(b) if isinstance(b, int) else _unwrap(b)))


def _sum(values: list) -> Any:
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise TypeError("sum() needs a list of int, uint or double")
    return sum(values) if values else 0


def _min(values: list) -> Any:
    if not values:
        raise ValueError("min called on empty list")
    return min(values)


def _max(values: list) -> Any:
    if not values:
        raise ValueError("max called on empty list")
    return max(values)


def _ov(oid: str, ret: Any, params: list, impl, member: bool = False) -> Any:
    return cel.Overload(oid, ret, params, is_member=member, impl=impl)


def function_decls() -> list[Any]:
    """Declarations for cel.NewEnv(functions=...): the Kubernetes quantity and list functions."""
    T, M = cel.Type, cel.Type.MAP
    return [
        cel.FunctionDecl("quantity", [_ov("string_to_quantity", M, [T.STRING], _quantity)]),
        cel.FunctionDecl("isQuantity", [_ov("is_quantity_string", T.BOOL, [T.STRING], _is_quantity)]),
        cel.FunctionDecl("compareTo", [_ov("quantity_compareTo_quantity", T.INT, [M, M], _compare, True)]),
        cel.FunctionDecl("isGreaterThan", [_ov("quantity_isGreaterThan_quantity", T.BOOL, [M, M],
                                              lambda a, b: _compare(a, b) > 0, True)]),
        cel.FunctionDecl("isLessThan", [_ov("quantity_isLessThan_quantity", T.BOOL, [M, M],
                                           lambda a, b: _compare(a, b) < 0, True)]),
        cel.FunctionDecl("add", [_ov("quantity_add_quantity", M, [M, M], _add, True),
                                 _ov("quantity_add_int", M, [M, T.INT], _add, True)]),
        cel.FunctionDecl("sub", [_ov("quantity_sub_quantity", M, [M, M], _sub, True),
                                 _ov("quantity_sub_int", M, [M, T.INT], _sub, True)]),
        cel.FunctionDecl("asInteger", [_ov("quantity_asInteger", T.INT, [M], _as_integer, True)]),
        cel.FunctionDecl("isInteger", [_ov("quantity_isInteger", T.BOOL, [M],
                                           lambda q: _unwrap(q).denominator == 1, True)]),
        cel.FunctionDecl("asApproximateFloat", [_ov("quantity_asApproximateFloat", T.DOUBLE, [M],
                                                    lambda q: float(_unwrap(q)), True)]),
        # A global function in Kubernetes (`sign(q)`), though its doc comment shows `<Quantity>.sign()`.
        cel.FunctionDecl("sign", [_ov("quantity_sign", T.INT, [M],
                                      lambda q: (_unwrap(q) > 0) - (_unwrap(q) < 0))]),
        cel.FunctionDecl("sum", [_ov("list_sum", T.DYN, [T.LIST], _sum, True)]),
        cel.FunctionDecl("min", [_ov("list_min", T.DYN, [T.LIST], _min, True)]),
        cel.FunctionDecl("max", [_ov("list_max", T.DYN, [T.LIST], _max, True)]),
    ]
