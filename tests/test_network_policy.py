"""SR1: NetworkPolicies force all model traffic through LiteLLM.

The connectivity proof runs IBM's network-config-analyzer (``nca``) over the synthetic cluster in
``data/netpol-cluster/`` with the manifests from ``build_policies`` and checks nca's answer;
nothing here hard-codes what nca "would" say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from components import yaml_io

ROOT = Path(__file__).resolve().parent.parent

from components.config import (  # noqa: E402
    PLATFORM_NAMESPACES,
    ConfigError,
    InNamespaceClient,
    NetworkPolicyConfig,
    parse,
)
from components.network_policy import (  # noqa: E402
    NAME_LABEL,
    REFERENCE_PORTS,
    build_policies,
    resource_name,
)
from tests.platform_pods import (  # noqa: E402
    AGW_CONTROLLER,
    CODER_AGENT,
    CODER_CHAT,
    CODER_FIM,
    DECODE,
    DEFAULT,
    EMBEDDINGS,
    EVIL,
    EVIL_COLLECTOR,
    GMP,
    GRAFANA,
    GUIDELLM_BENCH,
    IMPOSTOR,
    INF_GW,
    KSERVE_CTRL,
    KSERVE_GW,
    KUBE_SYSTEM,
    LITELLM,
    LLMD_GW,
    MIGRATIONS,
    OTEL,
    PG_PRIMARY,
    PLATFORM_IMPOSTOR,
    PREFILL,
    PROM_OPERATOR,
    PROMETHEUS,
    QWEN_CPU,
    QWEN_OCI,
    RAW_EPP,
    RAW_VLLM,
    RULE_EVALUATOR,
    SCHEDULER,
    SIM_0,
    SIM_1,
    SIM_EPP,
    TEAM_A,
    TEAM_B,
    VLLM_BENCH,
)
from tests.reference_platform import reference_dir  # noqa: E402
from tools import matrix, nca, platform_model  # noqa: E402

needs_nca = pytest.mark.skipif(
    not nca.nca_available(),
    reason="`nca` (network-config-analyzer from requirements.txt) is not installed next to this Python "
    "nor on PATH; install requirements to run the SR1 connectivity proof",
)

PROTECTED = ("serving", "inference", "kserve", "llm-d")

# ---- pods of the deployed-platform model (data/netpol-cluster/pods.yaml)


@dataclass(frozen=True)
class Expect:
    id: str
    src: str
    dst: str
    allowed: bool
    ports: Optional[tuple[int, ...]] = None
    """Ports checked one by one; None = any port at all (a denial must then have no connection)."""
    rule: str = "SR1"


def _check(conn: "nca.Connectivity", e: Expect) -> None:
    got = conn.between(e.src, e.dst)
    if e.ports is None:
        if e.allowed:
            assert got, f"{e.rule}: {e.src} must reach {e.dst} on some port, nca says nothing is allowed"
        else:
            assert not got, f"{e.rule}: {e.src} must not reach {e.dst} on any port, nca allows {got}"
        return
    for port in e.ports:
        verb = "must" if e.allowed else "must not"
        assert got.allows(port) == e.allowed, (
            f"{e.rule}: {e.src} {verb} reach {e.dst} on {port}; nca allows {got}"
        )


NS = "allow-platform-namespaces"
IN = "allow-in-namespace-clients"

# Every flow the deployed platform needs, on the container port it uses (Dataplane V2 applies
# policy after Service -> target port translation). Listed once; proven with the default config
# and again with port scoping set to REFERENCE_PORTS.
PLATFORM_FLOWS = [
    # LiteLLM's backends (platform/litellm/values.yaml)
    Expect("litellm->embeddings:8080", LITELLM, EMBEDDINGS, True, (8080,), rule=f"serving/{NS} (litellm)"),
    Expect("litellm->coder-chat:8000", LITELLM, CODER_CHAT, True, (8000,), rule=f"serving/{NS} (litellm)"),
    Expect("litellm->coder-fim:8000", LITELLM, CODER_FIM, True, (8000,), rule=f"serving/{NS} (litellm)"),
    Expect("litellm->coder-agent:8000", LITELLM, CODER_AGENT, True, (8000,), rule=f"serving/{NS} (litellm)"),
    Expect("litellm->inference-gateway:80", LITELLM, INF_GW, True, (80,), rule=f"inference/{NS} (litellm)"),
    Expect("litellm->kserve-gateway:80", LITELLM, KSERVE_GW, True, (80,), rule=f"kserve/{NS} (litellm)"),
    Expect("litellm->llm-d-gateway:80", LITELLM, LLMD_GW, True, (80,), rule=f"llm-d/{NS} (litellm)"),
    # Prometheus (the seed's section-3 check: monitoring -> embeddings /health is 200)
    Expect("monitoring->embeddings:8080", PROMETHEUS, EMBEDDINGS, True, (8080,), rule=f"serving/{NS} (monitoring)"),
    Expect("monitoring->raw-vllm:8000", PROMETHEUS, RAW_VLLM, True, (8000,), rule=f"serving/{NS} (monitoring)"),
    Expect("monitoring->raw-vllm-epp:9090", PROMETHEUS, RAW_EPP, True, (9090,), rule=f"serving/{NS} (monitoring)"),
    Expect("monitoring->inference-gateway:15020", PROMETHEUS, INF_GW, True, (15020,), rule=f"inference/{NS} (monitoring)"),
    Expect("monitoring->vllm-sim-epp:9090", PROMETHEUS, SIM_EPP, True, (9090,), rule=f"inference/{NS} (monitoring)"),
    Expect("monitoring->kserve-predictor:8080", PROMETHEUS, QWEN_CPU, True, (8080,), rule=f"kserve/{NS} (monitoring)"),
    Expect("monitoring->llm-d-decode:8000,8001", PROMETHEUS, DECODE, True, (8000, 8001), rule=f"llm-d/{NS} (monitoring)"),
    Expect("monitoring->llm-d-scheduler:9090", PROMETHEUS, SCHEDULER, True, (9090,), rule=f"llm-d/{NS} (monitoring)"),
    # gateway proxy in `inference` -> the picker and model servers in `serving` (cross-namespace)
    Expect("inference-gateway->raw-vllm-epp:9002", INF_GW, RAW_EPP, True, (9002,), rule=f"serving/{NS} (inference)"),
    Expect("inference-gateway->raw-vllm:8000", INF_GW, RAW_VLLM, True, (8000,), rule=f"serving/{NS} (inference)"),
    # intra-namespace flows, selected by pod label inside the namespace
    Expect("raw-vllm-epp->raw-vllm:8000", RAW_EPP, RAW_VLLM, True, (8000,), rule=f"serving/{IN} (endpoint-picker)"),
    Expect("vllm-bench->raw-vllm:8000", VLLM_BENCH, RAW_VLLM, True, (8000,), rule=f"serving/{IN} (benchmark)"),
    Expect("guidellm-bench->raw-vllm:8000", GUIDELLM_BENCH, RAW_VLLM, True, (8000,), rule=f"serving/{IN} (benchmark)"),
    Expect("vllm-bench->embeddings:8080", VLLM_BENCH, EMBEDDINGS, True, (8080,), rule=f"serving/{IN} (benchmark)"),
    Expect("inference-gateway->vllm-sim-epp:9002", INF_GW, SIM_EPP, True, (9002,), rule=f"inference/{IN} (gateway-proxy)"),
    Expect("inference-gateway->vllm-sim:8000", INF_GW, SIM_0, True, (8000,), rule=f"inference/{IN} (gateway-proxy)"),
    Expect("vllm-sim-epp->vllm-sim:8000", SIM_EPP, SIM_1, True, (8000,), rule=f"inference/{IN} (endpoint-picker)"),
    Expect("kserve-gateway->qwen-cpu:8080", KSERVE_GW, QWEN_CPU, True, (8080,), rule=f"kserve/{IN} (gateway-proxy)"),
    Expect("kserve-gateway->qwen-oci:8080", KSERVE_GW, QWEN_OCI, True, (8080,), rule=f"kserve/{IN} (gateway-proxy)"),
    Expect("llm-d-gateway->scheduler:9002", LLMD_GW, SCHEDULER, True, (9002,), rule=f"llm-d/{IN} (gateway-proxy)"),
    Expect("llm-d-gateway->decode:8000", LLMD_GW, DECODE, True, (8000,), rule=f"llm-d/{IN} (gateway-proxy)"),
    Expect("llm-d-scheduler->decode:8000,8001", SCHEDULER, DECODE, True, (8000, 8001), rule=f"llm-d/{IN} (llm-inference-service)"),
    Expect("llm-d-scheduler->prefill:8000", SCHEDULER, PREFILL, True, (8000,), rule=f"llm-d/{IN} (llm-inference-service)"),
    Expect("llm-d-decode->prefill:8000,5600", DECODE, PREFILL, True, (8000, 5600), rule=f"llm-d/{IN} (llm-inference-service)"),
    Expect("llm-d-prefill->decode:5600", PREFILL, DECODE, True, (5600,), rule=f"llm-d/{IN} (llm-inference-service)"),
    # the gateway proxy in `inference` reaches the other layers' Gateways and servers too (trusted pod)
    Expect("inference-gateway->kserve-predictor:8080", INF_GW, QWEN_CPU, True, (8080,), rule=f"kserve/{NS} (inference)"),
    Expect("inference-gateway->llm-d-gateway:80", INF_GW, LLMD_GW, True, (80,), rule=f"llm-d/{NS} (inference)"),
    # the API server's admission calls to the KServe controller, via the Konnectivity agent in kube-system
    Expect("kube-system->kserve-controller:9443", KUBE_SYSTEM, KSERVE_CTRL, True, (9443,), rule="kserve/allow-api-server-webhooks"),
    # tenants use LiteLLM
    Expect("team-a->litellm:4000", TEAM_A, LITELLM, True, (4000,), rule="litellm/allow-proxy"),
    Expect("team-b->litellm:4000", TEAM_B, LITELLM, True, (4000,), rule="litellm/allow-proxy"),
]

DENIALS = [
    *[
        Expect(f"{src.split('/')[0]}/{src.split('/')[1]}-x-{ns}", src, ns, False, rule=f"{ns}/default-deny-ingress ({why})")
        for src, why in [
            (TEAM_A, "tenant"),
            (TEAM_B, "tenant"),
            (EVIL, "copied namespace labels grant nothing"),
            (IMPOSTOR, "copied LiteLLM pod labels grant nothing"),
            (PLATFORM_IMPOSTOR, "in-namespace client labels only count inside the namespace"),
            (DEFAULT, "seed section 3: default -> embeddings times out"),
            (KUBE_SYSTEM, "kube-system is not trusted"),
            (GMP, "managedPrometheus is off by default"),
            # Trusted namespaces are trusted by pod (allowedFromPods): their other pods reach nothing.
            (GRAFANA, "monitoring: only Prometheus is trusted"),
            (OTEL, "monitoring: only Prometheus is trusted"),
            (PROM_OPERATOR, "monitoring: only Prometheus is trusted"),
            (PG_PRIMARY, "litellm: only LiteLLM's proxy is trusted"),
            (MIGRATIONS, "litellm: only LiteLLM's proxy is trusted"),
            (AGW_CONTROLLER, "agentgateway-system: the controller calls no backend"),
        ]
        for ns in PROTECTED
        if not (src == KUBE_SYSTEM and ns == "kserve")
    ],
    *[
        Expect(f"{src.split('/')[1]}-x-{ns}", src, ns, False, rule=f"{ns}/default-deny-ingress (inference: only the gateway proxies are trusted)")
        for src in (SIM_0, SIM_EPP)
        for ns in PROTECTED
        if ns != "inference"
    ],
    # kube-system reaches kserve only on the webhook port (allow-api-server-webhooks)
    Expect("kube-system-x-kserve-predictor", KUBE_SYSTEM, QWEN_CPU, False, (8080, 8000, 80), rule="kserve/default-deny-ingress (kube-system: webhook port only)"),
    Expect("kube-system-x-kserve-gateway", KUBE_SYSTEM, KSERVE_GW, False, (80, 8080, 15020), rule="kserve/default-deny-ingress (kube-system: webhook port only)"),
    # model servers never call each other or back into the platform
    Expect("raw-vllm-x-coder-chat", RAW_VLLM, CODER_CHAT, False, rule="serving/default-deny-ingress (no label rule for model servers)"),
    Expect("embeddings-x-raw-vllm", EMBEDDINGS, RAW_VLLM, False, rule="serving/default-deny-ingress"),
    Expect("raw-vllm-x-raw-vllm-epp", RAW_VLLM, RAW_EPP, False, rule="serving/default-deny-ingress"),
    Expect("vllm-sim-x-vllm-sim", SIM_0, SIM_1, False, rule="inference/default-deny-ingress (intraNamespace off)"),
    Expect("vllm-sim-x-inference-gateway", SIM_0, INF_GW, False, rule="inference/default-deny-ingress"),
    Expect("qwen-cpu-x-qwen-oci", QWEN_CPU, QWEN_OCI, False, rule="kserve/default-deny-ingress"),
    Expect("qwen-cpu-x-kserve-controller", QWEN_CPU, KSERVE_CTRL, False, rule="kserve/default-deny-ingress"),
    Expect("kserve-controller-x-qwen-cpu", KSERVE_CTRL, QWEN_CPU, False, rule="kserve/default-deny-ingress"),
    # protected namespaces are not trusted by each other, except the gateway proxies of `inference` (allowedFrom);
    # from `serving` only the benchmark Jobs reach the other Gateways (tests/test_platform_doors.py)
    Expect("raw-vllm-x-inference", RAW_VLLM, "inference", False, rule="inference/default-deny-ingress"),
    Expect("raw-vllm-x-kserve", RAW_VLLM, "kserve", False, rule="kserve/default-deny-ingress"),
    Expect("embeddings-x-llm-d", EMBEDDINGS, "llm-d", False, rule="llm-d/default-deny-ingress"),
    Expect("kserve-x-serving", "kserve", "serving", False, rule="serving/default-deny-ingress"),
    Expect("kserve-x-llm-d", "kserve", "llm-d", False, rule="llm-d/default-deny-ingress"),
    Expect("llm-d-x-serving", "llm-d", "serving", False, rule="serving/default-deny-ingress"),
    Expect("llm-d-x-kserve", "llm-d", "kserve", False, rule="kserve/default-deny-ingress"),
]
DEFAULT_EXPECTATIONS = PLATFORM_FLOWS + DENIALS


@pytest.fixture(scope="module")
def default_conn() -> "nca.Connectivity":
    if not nca.nca_available():
        pytest.skip("`nca` not installed: install requirements.txt to run the SR1 connectivity proof")
    return nca.analyse(build_policies(NetworkPolicyConfig()), [])


@pytest.fixture(scope="module")
def scoped_conn() -> "nca.Connectivity":
    if not nca.nca_available():
        pytest.skip("`nca` not installed: install requirements.txt to run the SR1 connectivity proof")
    return nca.analyse(build_policies(NetworkPolicyConfig(ports=REFERENCE_PORTS)), [])


def test_expectation_count():
    assert len(PLATFORM_FLOWS) >= 30 and len(DENIALS) >= 40
    ids = [e.id for e in DEFAULT_EXPECTATIONS]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)


@needs_nca
@pytest.mark.parametrize("e", DEFAULT_EXPECTATIONS, ids=[e.id for e in DEFAULT_EXPECTATIONS])
def test_default_connectivity(default_conn, e: Expect):
    _check(default_conn, e)


@needs_nca
def test_nca_sees_the_whole_synthetic_cluster(default_conn):
    # Guards against a proof that passes because nca ignored pods: every pod reaches LiteLLM
    # (no policy there), so every pod must show up as a source.
    sources = {s for s, _ in default_conn.pairs}
    missing = [p for p in default_conn.pods if p != LITELLM and p not in sources]
    assert not missing, f"nca reported no connection at all from {missing}"


@needs_nca
@pytest.mark.parametrize("src", [LITELLM, PROMETHEUS, INF_GW])
def test_trusted_callers_reach_any_port_by_default(default_conn, src):
    # A model server added later on a port nobody listed keeps working for trusted callers.
    for dst in (RAW_VLLM, EMBEDDINGS, QWEN_CPU, DECODE):
        if src.split("/")[0] == dst.split("/")[0]:
            continue
        got = default_conn.between(src, dst)
        assert got.everything or got.tcp == ((1, 65535),), (
            f"serving/{NS}: trusted {src} must reach {dst} on every port by default (no port scoping), nca says {got}"
        )


@needs_nca
@pytest.mark.parametrize("dst", PROTECTED)
@pytest.mark.parametrize("ip", ["8.8.8.8", "10.128.0.5"], ids=["internet", "vpc-host"])
def test_outside_addresses_reach_nothing(default_conn, ip, dst):
    # Control: nca does model external sources (LiteLLM, which has no policy, is reachable).
    assert default_conn.from_ip(ip, "litellm"), f"nca must report {ip} -> litellm (no policy there)"
    assert not default_conn.from_ip(ip, dst), f"{dst}/default-deny-ingress: {ip} must not reach {dst}"


# ---------------------------------------------------------------- port scoping (opt-in)


@needs_nca
@pytest.mark.parametrize("e", PLATFORM_FLOWS + DENIALS[:16], ids=[e.id for e in PLATFORM_FLOWS + DENIALS[:16]])
def test_reference_port_set_carries_every_flow(scoped_conn, e: Expect):
    _check(scoped_conn, e)


@needs_nca
def test_port_scoping_closes_unlisted_ports(scoped_conn):
    for src, dst in [(LITELLM, RAW_VLLM), (PROMETHEUS, EMBEDDINGS), (RAW_EPP, RAW_VLLM), (DECODE, PREFILL)]:
        ns = dst.split("/")[0]
        got = scoped_conn.between(src, dst)
        assert not got.allows(8123), f"{ns}: with ports set, {src} must not reach {dst} on unlisted 8123 ({got})"
        assert got == nca.Allowed(tcp=nca._merge((p, p) for p in REFERENCE_PORTS[ns])), (
            f"{ns}: with ports set, {src} must reach {dst} on exactly {REFERENCE_PORTS[ns]}, nca says {got}"
        )


def test_reference_ports_cover_every_modelled_container_port():
    # The documented port set is the deployed platform's: every containerPort of a pod in a
    # protected namespace of the model is in it (kubelet-only probe ports included).
    _, pods = platform_model.synthetic_cluster([])
    for pod in pods:
        ns = pod["metadata"]["namespace"]
        if ns not in REFERENCE_PORTS:
            continue
        for c in pod["spec"]["containers"]:
            for port in c.get("ports", []):
                assert port["containerPort"] in REFERENCE_PORTS[ns], (
                    f"REFERENCE_PORTS[{ns!r}] misses containerPort {port['containerPort']} of {ns}/{pod['metadata']['name']}"
                )


def test_port_scoping_must_list_every_protected_namespace():
    partial = {k: v for k, v in REFERENCE_PORTS.items() if k != "llm-d"}
    with pytest.raises(ConfigError) as info:
        parse(_raw(networkPolicy={"ports": partial}))
    msg = str(info.value)
    assert "`llm-platform:networkPolicy`" in msg and "llm-d" in msg and "every protected namespace" in msg, msg


# ---------------------------------------------------------------- options


def test_options_off_by_default():
    cfg = NetworkPolicyConfig()
    assert cfg.ports is None and cfg.managed_prometheus is False
    assert cfg.gke_l7_proxy_ranges == [] and cfg.control_plane_ranges == [] and cfg.intra_namespace == []
    assert cfg.protected_namespace_names == list(PROTECTED)
    names = {resource_name(m) for m in build_policies(cfg)}
    assert names == {f"{ns}-{n}" for ns in PROTECTED for n in ("default-deny-ingress", NS, IN, "allow-gateway-proxy-egress")} | {
        "kserve-allow-api-server-webhooks", "inference-allow-gateway-internet-egress",
        *(f"{ns}-allow-benchmarks-to-gateways" for ns in PROTECTED if ns != "serving"),
        "litellm-default-deny-ingress", "litellm-allow-proxy", "litellm-allow-database-clients",
        *(f"monitoring-{n}" for n in ("default-deny-ingress", "allow-in-namespace", "allow-otlp", "allow-grafana",
                                      "allow-prometheus-queries", "allow-api-server-webhooks")),
    }, sorted(names)


@needs_nca
def test_managed_prometheus_is_trusted_when_on(default_conn):
    on = nca.analyse(build_policies(NetworkPolicyConfig(managed_prometheus=True)), [])
    for ns in PROTECTED:
        assert on.between(GMP, ns), f"{ns}/{NS}: managedPrometheus must let the GMP collectors in"
        assert not default_conn.between(GMP, ns), f"{ns}: gmp-system is not trusted by default"
        assert not on.between(RULE_EVALUATOR, ns), f"{ns}/{NS}: only the collectors of gmp-system scrape, nca says {on.between(RULE_EVALUATOR, ns)}"
        assert not on.between(EVIL_COLLECTOR, ns), f"{ns}/{NS}: a tenant pod with the collector's labels gets nothing"
        _check(on, Expect("team-a-x", TEAM_A, ns, False, rule=f"{ns}: tenants still denied"))


@needs_nca
def test_external_ranges_open_protected_namespaces_to_those_ranges_only(default_conn):
    cfg = NetworkPolicyConfig(gke_l7_proxy_ranges=["35.191.0.0/16"], control_plane_ranges=["172.16.0.32/28"])
    on = nca.analyse(build_policies(cfg), [])
    for ip, dst in [("35.191.10.1", INF_GW), ("172.16.0.34", KSERVE_CTRL)]:
        assert on.from_ip(ip, dst).allows(9443) or on.from_ip(ip, dst).allows(80), (
            f"allow-external-ranges: {ip} must reach {dst}, nca says {on.from_ip(ip, dst)}"
        )
        assert not default_conn.from_ip(ip, dst), f"by default {ip} must not reach {dst}"
    assert not on.from_ip("8.8.8.8", "serving"), "addresses outside the ranges must not reach serving"


@needs_nca
def test_intra_namespace_opens_one_namespace(default_conn):
    on = nca.analyse(build_policies(NetworkPolicyConfig(intra_namespace=["serving"])), [])
    assert on.between(RAW_VLLM, CODER_CHAT).everything, f"serving/allow-intra-namespace: {RAW_VLLM} must reach {CODER_CHAT}"
    assert not on.between(SIM_0, SIM_1), "intraNamespace [serving] must not open inference"
    assert not default_conn.between(RAW_VLLM, CODER_CHAT), f"by default {RAW_VLLM} must not reach {CODER_CHAT}"
    _check(on, Expect("team-a-x-serving", TEAM_A, "serving", False, rule="intraNamespace opens nothing to tenants"))


@needs_nca
def test_protected_namespaces_are_configurable():
    cfg = NetworkPolicyConfig(protected_namespaces=["serving", "inference"])
    policies = build_policies(cfg)
    assert {m["metadata"]["namespace"] for m in policies} == {"serving", "inference", "litellm", "monitoring"}
    conn = nca.analyse(policies, [])
    assert conn.between(TEAM_A, QWEN_CPU), "an unprotected kserve is open (why the stacks protect it)"
    _check(conn, Expect("team-a-x-serving", TEAM_A, "serving", False, rule="serving still protected"))


@needs_nca
def test_kube_system_reaches_only_the_webhook_port(default_conn):
    got = default_conn.between(KUBE_SYSTEM, "kserve")
    assert got == nca.Allowed(tcp=((9443, 9443),)), f"kserve/allow-api-server-webhooks: kube-system must reach kserve on 9443 only, nca says {got}"


def test_webhook_allow_only_for_protected_namespaces():
    names = {resource_name(m) for m in build_policies(NetworkPolicyConfig(protected_namespaces=["serving"]))}
    assert "kserve-allow-api-server-webhooks" not in names, "the default kserve entry applies only while kserve is protected"
    assert "monitoring-allow-api-server-webhooks" in names, "the Prometheus Operator's webhook in monitoring"
    names = {resource_name(m) for m in build_policies(NetworkPolicyConfig(webhook_ports={}))}
    assert "kserve-allow-api-server-webhooks" not in names


@needs_nca
def test_custom_in_namespace_client():
    cfg = NetworkPolicyConfig(in_namespace_clients=[InNamespaceClient(name="bench", label="app.kubernetes.io/name", values=["vllm-bench"])])
    conn = nca.analyse(build_policies(cfg), [])
    assert conn.between(VLLM_BENCH, RAW_VLLM).allows(8000)
    assert not conn.between(GUIDELLM_BENCH, RAW_VLLM), "only the listed client is allowed"
    assert not conn.between(RAW_EPP, RAW_VLLM), "clients not listed are not allowed"


@needs_nca
def test_many_tenants_are_all_denied():
    tenants = [f"tenant-{i:02d}" for i in range(25)]
    conn = nca.analyse(build_policies(NetworkPolicyConfig()), tenants)
    for t in tenants:
        for ns in PROTECTED:
            assert not conn.between(t, ns), f"{ns}/default-deny-ingress: {t} must not reach {ns} on any port"
        assert conn.between(t, "litellm").allows(4000), f"{t} must reach litellm on 4000"


# ---------------------------------------------------------------- the model matches the platform


def _reference_dir() -> Path:
    return reference_dir("serving")


def _deployments(ref: Path) -> list[tuple[str, dict]]:
    """(namespace, Deployment) of the reference's plain Deployments the model must contain."""
    out = []
    for f in sorted((ref / "serving").glob("*/deployment.yaml")):
        d = yaml_io.load(f.read_text())
        out.append((d["metadata"]["namespace"], d))
    sim = yaml_io.load((ref / "routing/gateway-api-inference/demo/sim.yaml").read_text())
    out.append(("inference", sim))  # namespace from clusters/ai-dev/catalog/demos/inference-demo.yaml
    return out


def test_model_has_the_reference_workloads_with_their_labels_and_ports():
    ref = _reference_dir()
    _, pods = platform_model.synthetic_cluster([])
    deps = _deployments(ref)
    assert len(deps) >= 6
    for ns, d in deps:
        tmpl = d["spec"]["template"]
        want_labels = tmpl["metadata"]["labels"]
        want_ports = {p["containerPort"] for c in tmpl["spec"]["containers"] for p in c.get("ports", [])}
        match = [
            p for p in pods
            if p["metadata"]["namespace"] == ns and want_labels.items() <= p["metadata"]["labels"].items()
        ]
        assert match, f"model has no pod in {ns} with the labels of {d['metadata']['name']} {want_labels}"
        got_ports = {pp["containerPort"] for c in match[0]["spec"]["containers"] for pp in c.get("ports", [])}
        assert want_ports == got_ports, f"{ns}/{d['metadata']['name']}: containerPorts {want_ports}, model has {got_ports}"


def test_model_has_the_reference_gateways_pools_and_namespaces():
    ref = _reference_dir()
    _, pods = platform_model.synthetic_cluster([])
    by_label = {(p["metadata"]["namespace"], k, v) for p in pods for k, v in p["metadata"]["labels"].items()}
    # Gateways: one agentgateway proxy per Gateway, in the Gateway's namespace.
    gateways = [
        ("inference", ref / "routing/gateway-api-inference/gateway/gateway.yaml"),
        ("kserve", ref / "serving/kserve/gateway.yaml"),
        ("llm-d", ref / "serving/llm-d/gateway.yaml"),
    ]
    for ns, f in gateways:
        gw = yaml_io.load(f.read_text())
        assert gw["spec"]["gatewayClassName"] == "agentgateway"
        assert (ns, "gateway.networking.k8s.io/gateway-name", gw["metadata"]["name"]) in by_label, (
            f"model lacks the proxy of Gateway {ns}/{gw['metadata']['name']}"
        )
    # InferencePools: the picker `<release>-epp` in the Application's destination namespace.
    for app in ("routing-core/inference-pool-raw-vllm.yaml", "demos/inference-pool.yaml"):
        a = yaml_io.load((ref / "clusters/ai-dev/catalog" / app).read_text())
        ns = a["spec"]["destination"]["namespace"]
        release = a["spec"]["sources"][0]["helm"]["releaseName"]
        assert (ns, "inferencepool", f"{release}-epp") in by_label, f"model lacks the picker of pool {release} in {ns}"
    # KServe predictors listen on 8080 in kserve; the benchmark Jobs run in serving.
    kust = yaml_io.load((ref / "serving/kserve/kustomization.yaml").read_text())
    assert kust["namespace"] == "kserve"
    for f in ("benchmarks/job.yaml", "benchmarks/guidellm-job.yaml"):
        job = yaml_io.load((ref / f).read_text())
        name = job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        assert (job["metadata"]["namespace"], "app.kubernetes.io/name", name) in by_label, f"model lacks {f}"
    assert ("llm-d", "app.kubernetes.io/part-of", "llminferenceservice") in by_label


def test_default_in_namespace_clients_match_the_model():
    # Each default client selects at least one modelled platform pod in a protected namespace.
    _, pods = platform_model.synthetic_cluster([])
    for c in NetworkPolicyConfig().in_namespace_clients:
        hits = [
            p for p in pods
            if p["metadata"]["namespace"] in PROTECTED and c.label in p["metadata"]["labels"]
            and (not c.values or p["metadata"]["labels"][c.label] in c.values)
        ]
        assert hits, f"inNamespaceClients {c.name} ({c.label}) selects no pod of the deployed-platform model"


# ---------------------------------------------------------------- manifests


def _all_variants() -> list[NetworkPolicyConfig]:
    return [
        NetworkPolicyConfig(),
        NetworkPolicyConfig(ports=REFERENCE_PORTS),
        NetworkPolicyConfig(
            managed_prometheus=True, gke_l7_proxy_ranges=["35.191.0.0/16"], control_plane_ranges=["172.16.0.32/28"],
            intra_namespace=["llm-d"],
        ),
    ]


VARIANT_IDS = ["defaults", "scoped-ports", "all-options"]


@pytest.mark.parametrize("cfg", _all_variants(), ids=VARIANT_IDS)
def test_manifests_validate_against_kubernetes_schema(cfg):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for m in build_policies(cfg):
        try:
            kubernetes_validate.validate(m, "1.33.0", strict=True)
        except kubernetes_validate.ValidationError as e:  # pragma: no cover - failure path
            pytest.fail(f"{resource_name(m)} is not a valid Kubernetes 1.33 NetworkPolicy: {e.message}")


@pytest.mark.parametrize("cfg", _all_variants(), ids=VARIANT_IDS)
def test_manifest_shape(cfg):
    policies = build_policies(cfg)
    assert policies == build_policies(cfg), "build_policies must be deterministic"
    names = [resource_name(m) for m in policies]
    assert len(names) == len(set(names))
    for ns in [*cfg.protected_namespaces, *cfg.platform_services.namespaces]:
        deny = [m for m in policies if m["metadata"]["namespace"] == ns and m["metadata"]["name"] == "default-deny-ingress"]
        assert len(deny) == 1 and deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for m in policies:
        ns = m["metadata"]["namespace"]
        assert m["apiVersion"] == "networking.k8s.io/v1" and m["kind"] == "NetworkPolicy"
        assert m["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "llm-platform",
            "app.kubernetes.io/part-of": "llm-platform-security",
        }
        assert ns in cfg.protected_namespaces + cfg.platform_services.namespaces
        if ns not in cfg.protected_namespaces or m["metadata"]["name"] in DOOR_POLICIES:
            _door_shape(m)  # litellm, monitoring, gateway egress, benchmarks: tests/test_platform_doors.py
            continue
        assert m["spec"]["policyTypes"] == ["Ingress"] and "egress" not in m["spec"]
        for rule in m["spec"].get("ingress", []):
            assert rule.get("from"), f"{resource_name(m)}: a rule without `from` allows every source"
            if m["metadata"]["name"] == "allow-api-server-webhooks":
                assert rule["ports"] == [{"protocol": "TCP", "port": p} for p in cfg.webhook_ports[ns]], resource_name(m)
                assert rule["from"][0] == {"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}}}, resource_name(m)
                assert rule["from"][1:] == [{"ipBlock": {"cidr": c}} for c in cfg.control_plane_ranges], resource_name(m)
                continue
            elif cfg.ports is None:
                assert "ports" not in rule, f"{resource_name(m)}: without `ports` config every rule is any-port"
            else:
                assert rule["ports"] == [{"protocol": "TCP", "port": p} for p in cfg.ports[ns]], resource_name(m)
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    # A namespace only by the immutable name label AND, in the same peer, its trusted pods'
                    # labels: never a whole namespace, never pod labels a tenant namespace could carry.
                    assert set(peer) == {"namespaceSelector", "podSelector"}, f"{resource_name(m)}: {peer}"
                    assert m["metadata"]["name"] == NS, resource_name(m)
                    name = peer["namespaceSelector"]["matchLabels"][NAME_LABEL]
                    assert peer["namespaceSelector"] == {"matchLabels": {NAME_LABEL: name}}
                    assert name != ns, f"{resource_name(m)}: an allow into itself"
                    labels = peer["podSelector"]["matchLabels"]
                    assert set(peer["podSelector"]) == {"matchLabels"} and labels, f"{resource_name(m)}: {peer}"
                    assert labels in cfg.trusted_pods[name], f"{resource_name(m)}: {name} pods {labels} are not configured"
                elif "podSelector" in peer:
                    # Pod labels only inside the policy's own namespace (no namespaceSelector).
                    assert set(peer) == {"podSelector"}, f"{resource_name(m)}: pod peers are same-namespace only"
                    assert m["metadata"]["name"] in (IN, "allow-intra-namespace"), resource_name(m)
                else:
                    assert set(peer) == {"ipBlock"} and m["metadata"]["name"] == "allow-external-ranges"


DOOR_POLICIES = ("allow-gateway-proxy-egress", "allow-gateway-internet-egress", "allow-benchmarks-to-gateways")
OPEN_TO_ALL = ("allow-proxy", "allow-otlp", "allow-grafana")
"""Ingress rules without `from` (every source): each on one labelled workload and its ports only."""


def _door_shape(m: dict) -> None:
    name = resource_name(m)
    spec = m["spec"]
    if m["metadata"]["name"] == "default-deny-ingress":
        return
    for rule in spec.get("ingress", []):
        if "from" not in rule:
            assert m["metadata"]["name"] in OPEN_TO_ALL and rule.get("ports") and spec["podSelector"], name
        for peer in rule.get("from", []):
            if "namespaceSelector" in peer:
                assert list(peer["namespaceSelector"]["matchLabels"]) == [NAME_LABEL], f"{name}: namespaces by name label only"
        if m["metadata"]["name"] != "allow-in-namespace":
            assert rule.get("ports"), f"{name}: names its ports"
    for rule in spec.get("egress", []):
        assert rule.get("to"), f"{name}: an egress rule without `to` allows every destination"
        for peer in rule["to"]:
            if "namespaceSelector" in peer:
                assert list(peer["namespaceSelector"]["matchLabels"]) == [NAME_LABEL], f"{name}: namespaces by name label only"
    if spec.get("egress"):
        assert spec["podSelector"], f"{name}: egress limits only the labelled platform clients"


def _raw(**extra: object) -> dict[str, str]:
    raw = {
        "gcp:project": "p",
        "llm-platform:cluster": json.dumps(
            {"name": "c", "location": "europe-west4", "nodePools": [{"name": "system"}]}
        ),
    }
    raw.update({f"llm-platform:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return raw


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_policy_count_does_not_grow_with_tenants(stack):
    stack_cfg = yaml_io.load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    base = {k.split(":", 1)[1]: v for k, v in stack_cfg.items() if k.startswith("llm-platform:") and k != "llm-platform:tenants"}
    one = parse(_raw(**base, tenants=["team-a"]))
    many = parse(_raw(**base, tenants=[f"tenant-{i:04d}" for i in range(1000)]))
    assert len(many.tenants) == 1000
    assert one.network_policy.protected_namespace_names == list(PROTECTED), (
        f"Pulumi.{stack}.yaml must protect every namespace that runs model servers: {list(PROTECTED)}"
    )
    a, b = build_policies(one.network_policy), build_policies(many.network_policy)
    # 4 per protected namespace (default-deny, platform namespaces, in-namespace clients, gateway-proxy egress),
    # benchmarks -> the 3 other Gateways, inference-gateway's internet egress, kserve's webhook allow;
    # litellm 3; monitoring 5 + its webhook allow.
    assert len(a) == len(b) == 30, f"NetworkPolicy count: 1 tenant {len(a)}, 1,000 tenants {len(b)}"
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    text = json.dumps(b)
    assert "tenant-0" not in text and "team-a" not in text, "SR1 policies must never name a tenant"


@pytest.mark.parametrize(
    "extra, key, words",
    [
        ({"networkPolicy": {"allowedFrom": ["litellm", "litellm"]}}, "networkPolicy.allowedFrom", ["twice"]),
        ({"networkPolicy": {"protectedNamespaces": ["serving", "serving"]}}, "networkPolicy.protectedNamespaces", ["twice"]),
        ({"networkPolicy": {"protectedNamespaces": []}}, "networkPolicy", ["protectedNamespaces", "empty"]),
        ({"networkPolicy": {"protectedNamespaces": ["Serving"]}}, "networkPolicy.protectedNamespaces", ["DNS-1123"]),
        ({"networkPolicy": {"ports": {**REFERENCE_PORTS, "serving": [70000]}}}, "networkPolicy.ports", ["serving", "70000", "1-65535"]),
        ({"networkPolicy": {"ports": {**REFERENCE_PORTS, "kserve": []}}}, "networkPolicy.ports", ["kserve", "empty"]),
        ({"networkPolicy": {"ports": {**REFERENCE_PORTS, "other": [80]}}}, "networkPolicy", ["other", "not in `protectedNamespaces`"]),
        ({"networkPolicy": {"intraNamespace": ["litellm"]}}, "networkPolicy", ["intraNamespace", "litellm"]),
        ({"networkPolicy": {"webhookPorts": {"kserv": [9443]}}}, "networkPolicy", ["webhookPorts", "kserv"]),
        ({"networkPolicy": {"webhookPorts": {"kserve": [0]}}}, "networkPolicy.webhookPorts", ["kserve", "out of range"]),
        ({"networkPolicy": {"gkeL7ProxyRanges": ["35.191.0.0/33"]}}, "networkPolicy.gkeL7ProxyRanges", ["CIDR"]),
        ({"networkPolicy": {"controlPlaneRanges": ["172.16.0.33/28"]}}, "networkPolicy.controlPlaneRanges", ["CIDR"]),
        ({"networkPolicy": {"inNamespaceClients": [{"name": "x", "label": "bad key!"}]}}, "networkPolicy.inNamespaceClients[0].label", ["label key"]),
        ({"networkPolicy": {"servingAllowedFrom": ["litellm"]}}, "networkPolicy.servingAllowedFrom", ["unknown key"]),
        ({"networkPolicy": {"allowedFrom": ["litellm", "keda"]}}, "", ["networkPolicy.allowedFrom", "keda", "networkPolicy.allowedFromPods", "never trusted whole"]),
        ({"networkPolicy": {"allowedFromPods": {"monitoring": [{}]}}}, "networkPolicy.allowedFromPods", ["monitoring", "every pod"]),
        ({"networkPolicy": {"allowedFromPods": {"monitoring": []}}}, "networkPolicy.allowedFromPods", ["monitoring", "no pods"]),
        ({"networkPolicy": {"allowedFromPods": {"keda": [{"app": "keda"}]}}}, "networkPolicy", ["allowedFromPods", "keda", "not a trusted namespace"]),
        ({"networkPolicy": {"allowedFromPods": {"gmp-system": [{"app": "x"}]}}}, "networkPolicy", ["gmp-system", "managedPrometheus"]),
        ({"networkPolicy": {"allowedFromPods": {"monitoring": [{"bad key!": "x"}]}}}, "networkPolicy.allowedFromPods", ["monitoring", "label key"]),
        ({"networkPolicy": {"allowedFromPods": {"monitoring": [{"app": ""}]}}}, "networkPolicy.allowedFromPods", ["monitoring", "empty label value"]),
        ({"tenants": ["team-a", "serving"]}, "tenants", ["platform namespace"]),
        ({"tenants": ["team-a", "kserve"]}, "tenants", ["platform namespace"]),
        ({"tenants": ["team-a", "team-a"]}, "tenants", ["twice"]),
        ({"tenants": ["models"], "networkPolicy": {"protectedNamespaces": ["serving", "models"]}}, "", ["models", "protectedNamespaces"]),
    ],
    ids=[
        "allowed-dup", "protected-dup", "protected-empty", "protected-bad-name", "port-too-big", "port-list-empty",
        "ports-unprotected-ns", "intra-unprotected", "webhook-unprotected", "webhook-port-zero", "bad-cidr", "bad-cp-cidr", "bad-label", "old-key",
        "trusted-ns-without-pods", "trusted-pods-empty-set", "trusted-pods-empty-list", "trusted-pods-stray-ns", "trusted-pods-gmp-off",
        "trusted-pods-bad-key", "trusted-pods-empty-value",
        "tenant-is-platform", "tenant-is-kserve", "tenant-dup", "tenant-is-protected",
    ],
)
def test_config_errors_name_the_key(extra, key, words):
    assert parse(_raw()).network_policy == NetworkPolicyConfig()
    with pytest.raises(ConfigError) as info:
        parse(_raw(**extra))
    msg = str(info.value)
    assert f"`llm-platform:{key}`" in msg if key else "`llm-platform`" in msg, msg
    for w in words:
        assert w in msg, msg


def test_platform_namespaces_cover_sr1_roles():
    cfg = NetworkPolicyConfig()
    for ns in {*cfg.protected_namespaces, *cfg.allowed_from, "gmp-system"}:
        assert ns in PLATFORM_NAMESPACES, f"{ns} must be a platform namespace so no tenant can take its name"


# ---------------------------------------------------------------- matrix output


@needs_nca
def test_write_matrix_is_deterministic_and_lists_tenants(tmp_path):
    tenants = ["research", "chat"]
    policies = build_policies(NetworkPolicyConfig())
    matrix.write_matrix(policies, tenants, tmp_path / "a")
    matrix.write_matrix(policies, tenants, tmp_path / "b")
    for f in ("connectivity.md", "connectivity.svg"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f"{f} is not byte-identical"
    md = (tmp_path / "a" / "connectivity.md").read_text()
    svg = (tmp_path / "a" / "connectivity.svg").read_text()
    for t in tenants:
        # computed by nca: denied every protected namespace, LiteLLM's proxy port, OTLP and Grafana only
        assert f"| `{t}` | — | — | — | — | 4000 | 3000, 4317-4318 |" in md, md
        assert f">{t}<" in svg
    assert "| `litellm` | all | all | all | all | 4000, 5432, 8000 |" in md, md
    assert "| `kube-system` | — | — | 9443 | — | 4000 | 3000, 4317-4318, 10250 |" in md, md
    assert "| `cnpg-system` | — | — | — | — | 4000, 5432, 8000 |" in md, md
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    import xml.etree.ElementTree as ET

    ET.fromstring(svg)  # well-formed


@needs_nca
def test_write_matrix_caps_tenants(tmp_path):
    tenants = [f"tenant-{i:03d}" for i in range(40)]
    matrix.write_matrix(build_policies(NetworkPolicyConfig()), tenants, tmp_path)
    md = (tmp_path / "connectivity.md").read_text()
    svg = (tmp_path / "connectivity.svg").read_text()
    more = 40 - matrix.TENANT_CAP
    assert f"+{more} more tenants" in md and f"+{more} more tenants" in svg
    assert "tenant-000" in svg and "tenant-039" not in svg


def test_missing_nca_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(nca, "nca_available", lambda: False)
    with pytest.raises(nca.NcaError, match="not installed"):
        matrix.write_matrix(build_policies(NetworkPolicyConfig()), [], tmp_path)
    assert not (tmp_path / "connectivity.md").exists()


@needs_nca
def test_nca_failure_is_a_clear_error(tmp_path):
    bad = build_policies(NetworkPolicyConfig(ports=REFERENCE_PORTS))
    bad[1]["spec"]["ingress"][0]["ports"][0]["port"] = 99999
    with pytest.raises(nca.NcaError, match="nca failed"):
        matrix.write_matrix(bad, [], tmp_path)


def test_parse_output_formats():
    text = "\n".join(
        [
            "global: cluster has 2 unique endpoints, 2 namespaces",
            "a/x => b/y : {protocols:TCP,dst_ports:80,8080,9000-9005}",
            "a/x => b/y : {protocols:UDP,dst_ports:53}",
            "a/x => c/z : All connections",
            "b/y => c/z : {protocols:TCP}",
        ]
    )
    pairs = nca.parse_output(text)
    assert pairs[("a/x", "b/y")].allows(9003) and not pairs[("a/x", "b/y")].allows(81)
    assert pairs[("a/x", "b/y")].allows(53, "UDP")
    assert pairs[("a/x", "c/z")].everything
    assert pairs[("b/y", "c/z")].allows(12345) and not pairs[("b/y", "c/z")].everything
    with pytest.raises(nca.NcaError):
        nca.Allowed.parse("{protocols:TCP,methods:GET}")


# ---------------------------------------------------------------- Pulumi component


def test_component_creates_one_resource_per_manifest():
    import pulumi

    from components.network_policy import NetworkPolicies, NetworkPoliciesArgs

    created: list[tuple[str, str, dict]] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            created.append((args.typ, args.name, dict(args.inputs)))
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs):
            return {}

    pulumi.runtime.set_mocks(Mocks(), preview=False)
    cfg = NetworkPolicyConfig(intra_namespace=["serving"])

    @pulumi.runtime.test
    def run():
        comp = NetworkPolicies("sr1", NetworkPoliciesArgs(config=cfg))
        return pulumi.Output.all(*[p.urn for p in comp.policies])

    run()
    expected = [resource_name(m) for m in build_policies(cfg)]
    assert ("llm-platform:security:NetworkPolicies", "sr1") in [(t, n) for t, n, _ in created]
    got = [(n, i) for t, n, i in created if t == "kubernetes:networking.k8s.io/v1:NetworkPolicy"]
    # The mocks see registrations asynchronously: compare as sets, then each resource's inputs.
    assert sorted(n for n, _ in got) == sorted(expected) and len(got) == len(expected)
    by_name = dict(got)
    for m in build_policies(cfg):
        inputs = by_name[resource_name(m)]
        assert inputs["metadata"]["namespace"] == m["metadata"]["namespace"], resource_name(m)
        assert inputs["spec"]["podSelector"] == m["spec"]["podSelector"], resource_name(m)
