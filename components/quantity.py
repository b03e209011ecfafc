"""Kubernetes resource quantities (apimachinery resource.ParseQuantity), exactly, without dependencies.

Used by the config (memory bounds are validated before any resource is registered) and by the
CEL quantity() library in tools/k8s_cel_library.py.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 10**3), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>[KMGTPE]i|[eE][+-]?[0-9]+|[numkMGTPE]|)$"
)


class QuantityError(ValueError):
    """The string is not a Kubernetes quantity."""


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity string (resource.ParseQuantity), or QuantityError."""
    if not isinstance(text, str):
        raise QuantityError(f"quantity expects a string, got {type(text).__name__}")
    m = _QUANTITY.fullmatch(text)
    if not m:
        raise QuantityError(f"quantities must match the regular expression "
                            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}")
    value = Fraction(m.group("num"))
    suffix = m.group("suffix")
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return value * Fraction(10) ** int(suffix[1:])
    return value * _DECIMAL[suffix]
