"""SR1's trusted namespaces are trusted by pod: `networkPolicy.allowedFromPods`.

`allow-platform-namespaces` admits, from each trusted namespace, only the pods that call the protected
namespaces (LiteLLM's proxy, the gateway proxies, Prometheus, the GMP collectors), each peer a namespace by
its immutable name label AND the pods' labels. Proven by nca over the deployed-platform model
(data/netpol-cluster/), with a control analysis of the namespace-wide rendering this replaced.
"""

from __future__ import annotations

import copy

import pytest

from components.config import NetworkPolicyConfig
from components.network_policy import build_policies, ns_peer, trusted_namespaces
from components.platform_facts import TRUSTED_PLATFORM_PODS
from tests.platform_pods import (
    AGW_CONTROLLER,
    CODER_CHAT,
    DECODE,
    EMBEDDINGS,
    GMP,
    GRAFANA,
    INF_GW,
    KSERVE_GW,
    LITELLM,
    LLMD_GW,
    MIGRATIONS,
    OTEL,
    PG_PRIMARY,
    PG_REPLICA,
    PROM_OPERATOR,
    PROMETHEUS,
    QWEN_CPU,
    RAW_EPP,
    RAW_VLLM,
    RULE_EVALUATOR,
    SCHEDULER,
    SIM_0,
    SIM_EPP,
)
from tests.test_network_policy import NS, PLATFORM_FLOWS, PROTECTED
from tools import nca, platform_model

needs_nca = pytest.mark.skipif(not nca.nca_available(), reason="`nca` (requirements.txt) is not installed")

MODEL_SERVERS = [RAW_VLLM, CODER_CHAT, EMBEDDINGS, RAW_EPP, INF_GW, SIM_0, SIM_EPP, QWEN_CPU, KSERVE_GW, DECODE, SCHEDULER, LLMD_GW]
"""One target of each kind in every protected namespace: servers, pickers, gateway proxies."""
UNTRUSTED = [GRAFANA, OTEL, PROM_OPERATOR, PG_PRIMARY, PG_REPLICA, MIGRATIONS, AGW_CONTROLLER, SIM_0, SIM_EPP]
"""Pods of trusted namespaces that call no protected namespace (reachable by tenants: Grafana 3000, OTLP)."""


def _ns(pod: str) -> str:
    return pod.split("/", 1)[0]


def _analyse(policies):
    if not nca.nca_available():
        pytest.skip("`nca` not installed")
    return nca.analyse(policies, [])


def _namespace_wide(policies: list[dict], cfg: NetworkPolicyConfig) -> list[dict]:
    """The rendering before pods were selected: every pod of each trusted namespace (the control)."""
    out = copy.deepcopy(policies)
    for m in out:
        if m["metadata"]["name"] == NS:
            ns = m["metadata"]["namespace"]
            m["spec"]["ingress"][0]["from"] = [ns_peer(s) for s in trusted_namespaces(cfg) if s != ns]
    return out


@pytest.fixture(scope="module")
def by_pod():
    return _analyse(build_policies(NetworkPolicyConfig(managed_prometheus=True)))


@pytest.fixture(scope="module")
def whole():
    cfg = NetworkPolicyConfig(managed_prometheus=True)
    return _analyse(_namespace_wide(build_policies(cfg), cfg))


@needs_nca
@pytest.mark.parametrize("src", UNTRUSTED + [RULE_EVALUATOR])
def test_untrusted_pods_of_trusted_namespaces_reach_no_model_server(by_pod, whole, src):
    for dst in MODEL_SERVERS:
        if _ns(dst) == _ns(src):
            continue  # own namespace: allow-in-namespace-clients decides (tests/test_network_policy.py)
        got = by_pod.between(src, dst)
        assert not got, f"{_ns(dst)}/{NS}: {src} is not a trusted pod and must not reach {dst}, nca allows {got}"
    # Control: the namespace-wide rendering lets the same pod in, so the denial above is the pod selector's.
    open_to = [dst for dst in MODEL_SERVERS if _ns(dst) != _ns(src) and whole.between(src, dst)]
    assert open_to, f"control: with namespace-wide trust {src} must reach a model server, nca says none"


@needs_nca
@pytest.mark.parametrize("src", [LITELLM, PROMETHEUS, INF_GW, GMP])
def test_trusted_pods_reach_every_other_protected_namespace(by_pod, src):
    for dst in MODEL_SERVERS:
        if _ns(dst) == _ns(src):
            continue
        got = by_pod.between(src, dst)
        assert got.everything or got.tcp == ((1, 65535),), f"{_ns(dst)}/{NS}: trusted {src} -> {dst} on every port, nca says {got}"


def _matches(labels: dict[str, str], pod: dict) -> bool:
    return labels.items() <= pod["metadata"].get("labels", {}).items()


def test_trusted_pods_are_exactly_the_callers_the_platform_needs():
    # The platform flows that cross into a protected namespace through allow-platform-namespaces have these
    # sources; the default selectors (GMP collectors aside: an option) pick exactly them in the model.
    needed = {e.src for e in PLATFORM_FLOWS if e.allowed and NS in e.rule and _ns(e.src) != _ns(e.dst)}
    _, pods = platform_model.synthetic_cluster([])
    cfg = NetworkPolicyConfig()
    trusted = {
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in pods
        for ns, selectors in cfg.trusted_pods.items()
        if p["metadata"]["namespace"] == ns and any(_matches(labels, p) for labels in selectors)
    }
    assert trusted == needed, f"trusted pods {sorted(trusted)} != callers the flows need {sorted(needed)}"
    assert {_ns(p) for p in needed} >= {"litellm", "inference", "monitoring"}, needed


def test_every_trusted_label_set_is_copied_by_a_tenant_fixture():
    # The impostor proof below covers each label set only if some tenant pod carries it.
    namespaces, pods = platform_model.synthetic_cluster([])
    tenants = {ns["metadata"]["name"] for ns in namespaces if ns["metadata"]["labels"].get(platform_model.TENANT_LABEL)}
    for ns, selectors in NetworkPolicyConfig(managed_prometheus=True).trusted_pods.items():
        for labels in selectors:
            assert any(p["metadata"]["namespace"] in tenants and _matches(labels, p) for p in pods), (
                f"no tenant pod of the model copies {ns}'s trusted labels {labels}"
            )


@needs_nca
def test_tenant_pods_with_trusted_labels_reach_nothing(by_pod):
    namespaces, pods = platform_model.synthetic_cluster([])
    tenants = {ns["metadata"]["name"] for ns in namespaces if ns["metadata"]["labels"].get(platform_model.TENANT_LABEL)}
    selectors = [labels for sets in NetworkPolicyConfig(managed_prometheus=True).trusted_pods.values() for labels in sets]
    impostors = [
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in pods
        if p["metadata"]["namespace"] in tenants and any(_matches(labels, p) for labels in selectors)
    ]
    assert len(impostors) >= 3, impostors
    for src in impostors:
        for ns in PROTECTED:
            got = by_pod.between(src, ns)
            assert not got, f"{ns}/{NS}: {src} copies trusted pod labels in a tenant namespace, nca allows {got}"


@needs_nca
def test_entries_replace_a_default_and_name_the_pods_of_other_namespaces():
    grafana, keda = {"app.kubernetes.io/name": "grafana"}, {"app.kubernetes.io/name": "keda-operator"}
    cfg = NetworkPolicyConfig(
        allowed_from=["litellm", "monitoring", "keda"], allowed_from_pods={"monitoring": [grafana], "keda": [keda]}
    )
    assert cfg.trusted_pods["monitoring"] == [grafana]
    assert cfg.trusted_pods["litellm"] == [dict(x) for x in TRUSTED_PLATFORM_PODS["litellm"]]
    conn = _analyse(build_policies(cfg))
    assert conn.between(GRAFANA, RAW_VLLM), "serving: the configured pods of monitoring are trusted"
    assert not conn.between(PROMETHEUS, RAW_VLLM), "serving: an entry replaces the default, it does not add to it"
    assert conn.between(LITELLM, RAW_VLLM), "serving: other namespaces keep their defaults"
    assert conn.between("keda/keda-operator-0", RAW_VLLM), "serving: a namespace without a default gets its configured pods"
    assert not conn.between(INF_GW, RAW_VLLM), "serving: inference is no longer in allowedFrom"


def test_defaults_cover_the_default_trusted_namespaces():
    cfg = NetworkPolicyConfig(managed_prometheus=True)
    assert cfg.allowed_from_pods == {}, "the platform defaults live in platform_facts, not in the field default"
    assert set(cfg.trusted_pods) == {*cfg.allowed_from, "gmp-system"} <= set(TRUSTED_PLATFORM_PODS)
    for ns, selectors in cfg.trusted_pods.items():
        assert selectors and all(selectors), f"{ns}: the default trusts no pod or every pod: {selectors}"


def test_a_namespace_without_known_pods_never_renders_as_every_pod():
    # Built from code rather than parsed (the stack config refuses it with the same message).
    cfg = NetworkPolicyConfig(allowed_from=["litellm", "keda"])
    with pytest.raises(ValueError, match=r"allowedFrom` names keda, whose trusted pods are not known"):
        build_policies(cfg)
