"""What every config model shares: the base model, the error type, and one validator per rule.

A rule (a namespace list, an IPv4 CIDR, a port list, a label map, ...) is written here once; the models use it
as an ``Annotated`` type or call it from a field validator when the message names something key-specific, so
the same mistake gives the same message under every key.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Callable, Optional, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from components.platform_facts import DEFAULT_PROTECTED_NAMESPACES, LITELLM_NAMESPACE, MONITORING_NAMESPACE


class ConfigError(ValueError):
    """A stack configuration problem, phrased for the person editing Pulumi.<stack>.yaml."""


class ConfigModel(BaseModel):
    # camelCase keys as Pulumi users write them; unknown keys are errors, not silently ignored.
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        use_attribute_docstrings=True,
    )


# Namespaces the platform itself owns; a tenant may not take one of these names.
PLATFORM_NAMESPACES = frozenset(
    {
        *DEFAULT_PROTECTED_NAMESPACES,
        LITELLM_NAMESPACE,
        "agentgateway-system",
        MONITORING_NAMESPACE,
        "kyverno",
        "kueue-system",
        "gmp-system",
        "gmp-public",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "default",
    }
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
SA_EMAIL = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[-a-z0-9.]+\.iam\.gserviceaccount\.com$")
# A Kubernetes service account's request user name; group 1 is its namespace.
SA_USER = re.compile(r"^system:serviceaccount:([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?):([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
# Kubernetes allows an empty label value in a selector; InNamespaceClient's values may not be empty.
LABEL_VALUE_OR_EMPTY = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def dns_label(value: str, what: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid {what}: use at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (DNS-1123 label)"
        )
    return value


_T = TypeVar("_T")


def no_duplicates(values: list[_T], what: str) -> list[_T]:
    seen: set[_T] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what} {v!r} is listed twice; list each once")
        seen.add(v)
    return values


def service_account_user(value: str) -> str:
    if not SA_USER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a service account user name; write it like "
            "system:serviceaccount:<namespace>:<service-account>"
        )
    return value


def namespace_name(value: str) -> str:
    return dns_label(value, "namespace name")


def namespace_list(
    values: list[str],
    *,
    item: str = "namespace",
    name: str = "namespace name",
    platform_refusal: Optional[Callable[[str], str]] = None,
) -> list[str]:
    """Every entry a DNS-1123 label (and, with `platform_refusal`, not a platform namespace), each listed once."""
    for ns in values:
        dns_label(ns, name)
        if platform_refusal is not None and ns in PLATFORM_NAMESPACES:
            raise ValueError(platform_refusal(ns))
    return no_duplicates(values, item)


def scope_namespaces(values: Optional[list[str]], if_empty: str) -> Optional[list[str]]:
    """An optional namespace scope: unset means the default scope, an empty list would match nothing."""
    if values is None:
        return values
    if not values:
        raise ValueError(f"an empty namespace list matches nothing; {if_empty}")
    return namespace_list(values)


def ipv4_cidr(value: str, example: str = "") -> str:
    """The CIDR in canonical form; host bits set are an error (strict)."""
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError as e:
        hint = f"; write it like {example}" if example else ""
        raise ValueError(f"{value!r} is not an IPv4 CIDR ({e}){hint}") from e


def cidr_list(values: list[str]) -> list[str]:
    return no_duplicates([ipv4_cidr(c) for c in values], "CIDR")


def port_list(values: list[int], what: str) -> list[int]:
    for p in values:
        if not 1 <= p <= 65535:
            raise ValueError(f"{what} port {p} is out of range; use 1-65535")
    return no_duplicates(values, f"{what} port")


def label_map(v: dict[str, str], what: str) -> dict[str, str]:
    """matchLabels: label keys, and label values that may be empty."""
    for k, val in v.items():
        if not LABEL_KEY.fullmatch(k):
            raise ValueError(f"{what} key {k!r} is not a valid label key")
        if not LABEL_VALUE_OR_EMPTY.fullmatch(val):
            raise ValueError(f"{what} value {val!r} (key {k!r}) is not a valid label value")
    return v


NamespaceName = Annotated[str, AfterValidator(namespace_name)]
"""A namespace name (DNS-1123 label)."""
NamespaceList = Annotated[list[str], AfterValidator(namespace_list)]
"""Namespace names (DNS-1123 labels), each listed once."""
CidrList = Annotated[list[str], AfterValidator(cidr_list)]
"""IPv4 CIDRs, canonical and each listed once."""
