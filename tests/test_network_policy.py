"""SR1: NetworkPolicies force all model traffic through LiteLLM.

The connectivity proof runs IBM's network-config-analyzer (``nca``) over the synthetic cluster in
``tests/netpol/cluster/`` with the manifests from ``build_policies`` and checks nca's answer;
nothing here hard-codes what nca "would" say.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.config import (  # noqa: E402
    PLATFORM_NAMESPACES,
    ConfigError,
    NetworkPolicyConfig,
    Ports,
    parse,
)
from components.network_policy import NAME_LABEL, build_policies, resource_name  # noqa: E402
from tools import connectivity as nca  # noqa: E402

needs_nca = pytest.mark.skipif(
    nca.nca_executable() is None,
    reason="`nca` (network-config-analyzer from requirements.txt) is not installed next to this Python "
    "nor on PATH; install requirements to run the SR1 connectivity proof",
)

LITELLM = "litellm/litellm-proxy-0"
VLLM = "serving/vllm-0"
VLLM_2 = "serving/vllm-1"
GATEWAY = "inference/inference-gateway-0"
PICKER = "inference/endpoint-picker-0"
AGW_PROXY = "agentgateway-system/agentgateway-proxy-0"
PROMETHEUS = "monitoring/prometheus-0"
GMP = "gmp-system/collector-0"
TEAM_A = "team-a/app-0"
TEAM_B = "team-b/app-0"
IMPOSTOR = "team-a/litellm-impostor-0"
EVIL = "team-evil/prometheus-0"
DEFAULT = "default/debug-0"


@dataclass(frozen=True)
class Expect:
    id: str
    src: str
    dst: str
    allowed: bool
    ports: Optional[tuple[int, ...]] = None
    """Ports checked one by one; None = any port at all (a denial must then have no connection)."""
    exact: bool = False
    """The allowed set must be exactly ``ports`` (nothing more)."""
    rule: str = "SR1"


def _check(conn: "nca.Connectivity", e: Expect) -> None:
    got = conn.between(e.src, e.dst)
    if e.exact:
        want = nca.Allowed(tcp=nca._merge((p, p) for p in e.ports or ()))
        assert got == want, (
            f"{e.rule}: {e.src} must reach {e.dst} on exactly {sorted(e.ports or ())}, nca says {got}"
        )
        return
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


# Default configuration: NetworkPolicyConfig().
DEFAULT_EXPECTATIONS = [
    # ---- allowed pairs, on their ports
    Expect("litellm->vllm:8000", LITELLM, VLLM, True, (8000,), rule="SR1 allow-model-server (litellm)"),
    Expect("litellm->serving-only-8000", LITELLM, "serving", True, (8000,), exact=True,
           rule="SR1 allow-model-server opens the model port only"),
    Expect("gateway->vllm:8000", GATEWAY, VLLM, True, (8000,), rule="SR1 allow-model-server (inference)"),
    Expect("picker->vllm:8000", PICKER, VLLM, True, (8000,), rule="SR1 endpoint picker scrapes vLLM metrics"),
    Expect("agentgateway->vllm:8000", AGW_PROXY, VLLM, True, (8000,), rule="SR1 allow-model-server (agentgateway)"),
    Expect("monitoring->serving-metrics-only", PROMETHEUS, "serving", True, (8000,), exact=True,
           rule="SR1 monitoring limited to servingMetrics"),
    Expect("litellm->gateway:80,8080", LITELLM, GATEWAY, True, (80, 8080), rule="SR1 allow-gateway (litellm)"),
    Expect("agentgateway->gateway:80,8080", AGW_PROXY, GATEWAY, True, (80, 8080), rule="SR1 allow-gateway (agentgateway)"),
    Expect("agentgateway->picker:9002", AGW_PROXY, PICKER, True, (9002,), rule="SR1 allow-endpoint-picker (agentgateway ext-proc)"),
    Expect("gateway->picker:9002", GATEWAY, PICKER, True, (9002,), rule="SR1 allow-endpoint-picker (intra-inference ext-proc)"),
    Expect("monitoring->inference-metrics-only", PROMETHEUS, "inference", True, (9090, 15020), exact=True,
           rule="SR1 monitoring limited to inferenceMetrics"),
    Expect("team-a->litellm", TEAM_A, LITELLM, True, (4000,), rule="SR1 tenants use LiteLLM"),
    Expect("team-b->litellm", TEAM_B, LITELLM, True, (4000,), rule="SR1 tenants use LiteLLM"),
    # ---- denials
    Expect("team-a-x-serving", TEAM_A, "serving", False, rule="SR1 tenants denied by default"),
    Expect("team-a-x-inference", TEAM_A, "inference", False, rule="SR1 tenants denied by default"),
    Expect("team-b-x-serving", TEAM_B, "serving", False, rule="SR1 tenants denied by default"),
    Expect("team-b-x-inference", TEAM_B, "inference", False, rule="SR1 tenants denied by default"),
    Expect("team-evil-x-serving", EVIL, "serving", False,
           rule="SR1 copied namespace labels (name: monitoring) grant nothing"),
    Expect("team-evil-x-inference", EVIL, "inference", False,
           rule="SR1 copied namespace labels (name: monitoring) grant nothing"),
    Expect("impostor-x-serving", IMPOSTOR, "serving", False, rule="SR1 copied LiteLLM pod labels grant nothing"),
    Expect("impostor-x-inference", IMPOSTOR, "inference", False, rule="SR1 copied LiteLLM pod labels grant nothing"),
    Expect("default-x-serving", DEFAULT, "serving", False, rule="SR1 default namespace denied"),
    Expect("default-x-inference", DEFAULT, "inference", False, rule="SR1 default namespace denied"),
    Expect("monitoring-x-gateway-data", PROMETHEUS, GATEWAY, False, (80, 8080), rule="SR1 monitoring not on data ports"),
    Expect("monitoring-x-picker-data", PROMETHEUS, PICKER, False, (9002,), rule="SR1 monitoring not on data ports"),
    Expect("litellm-x-picker:9002", LITELLM, PICKER, False, (9002,), rule="SR1 only gateways call the endpoint picker"),
    Expect("litellm-x-inference-metrics", LITELLM, "inference", False, (9090, 15020), rule="SR1 metrics ports for scrapers only"),
    Expect("serving-x-inference", VLLM, "inference", False, rule="SR1 model servers do not call back into inference"),
    Expect("vllm-x-vllm", VLLM, VLLM_2, False, rule="SR1 intraServing is off by default"),
    Expect("gmp-x-serving", GMP, "serving", False, rule="SR1 managedPrometheus is off by default"),
    Expect("gmp-x-inference", GMP, "inference", False, rule="SR1 managedPrometheus is off by default"),
    Expect("agentgateway-x-serving-other", AGW_PROXY, VLLM, False, (8001, 9090), rule="SR1 only the model port"),
]


@pytest.fixture(scope="module")
def default_conn() -> "nca.Connectivity":
    if nca.nca_executable() is None:
        pytest.skip("`nca` not installed: install requirements.txt to run the SR1 connectivity proof")
    return nca.analyse(build_policies(NetworkPolicyConfig()), [])


def test_expectation_count():
    allowed = [e for e in DEFAULT_EXPECTATIONS if e.allowed]
    denied = [e for e in DEFAULT_EXPECTATIONS if not e.allowed]
    assert len(DEFAULT_EXPECTATIONS) >= 20 and len(allowed) >= 8 and len(denied) >= 12
    assert len({e.id for e in DEFAULT_EXPECTATIONS}) == len(DEFAULT_EXPECTATIONS)


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


# ---------------------------------------------------------------- options


def test_options_off_by_default():
    cfg = NetworkPolicyConfig()
    assert cfg.managed_prometheus is False
    assert cfg.gke_l7_proxy_ranges == []
    assert cfg.intra_serving is False
    names = {(m["metadata"]["namespace"], m["metadata"]["name"]) for m in build_policies(cfg)}
    assert ("serving", "allow-intra-serving") not in names
    assert ("inference", "allow-gke-l7-proxies") not in names


@needs_nca
def test_managed_prometheus_opens_metrics_ports_only(default_conn):
    on = nca.analyse(build_policies(NetworkPolicyConfig(managed_prometheus=True)), [])
    for e in [
        Expect("gmp->serving", GMP, "serving", True, (8000,), exact=True, rule="SR1 managedPrometheus: servingMetrics"),
        Expect("gmp->inference", GMP, "inference", True, (9090, 15020), exact=True,
               rule="SR1 managedPrometheus: inferenceMetrics"),
        Expect("team-a-x-serving", TEAM_A, "serving", False, rule="SR1 tenants still denied"),
    ]:
        _check(on, e)
    assert not default_conn.between(GMP, "serving") and not default_conn.between(GMP, "inference")


@needs_nca
def test_gke_l7_proxy_ranges_open_gateway_ports_only(default_conn):
    ranges = ["35.191.0.0/16", "130.211.0.0/22"]
    on = nca.analyse(build_policies(NetworkPolicyConfig(gke_l7_proxy_ranges=ranges)), [])
    for ip in ("35.191.10.1", "130.211.1.1"):
        got = on.from_ip(ip, GATEWAY)
        assert got.allows(80) and got.allows(8080), f"SR1: GKE L7 proxy {ip} must reach {GATEWAY} on 80/8080, nca says {got}"
        assert not got.allows(9002), f"SR1: GKE L7 proxy {ip} must not reach the endpoint picker port 9002"
        assert not on.from_ip(ip, "serving"), f"SR1: GKE L7 proxy {ip} must not reach serving"
        assert not default_conn.from_ip(ip, "inference"), f"SR1: by default {ip} must not reach inference"
    assert not on.from_ip("8.8.8.8", "inference"), "SR1: addresses outside gkeL7ProxyRanges must not reach inference"


@needs_nca
def test_intra_serving_allows_serving_pods_to_each_other(default_conn):
    on = nca.analyse(build_policies(NetworkPolicyConfig(intra_serving=True)), [])
    assert on.between(VLLM, VLLM_2).everything, f"SR1 intraServing: {VLLM} must reach {VLLM_2} on every port"
    assert not default_conn.between(VLLM, VLLM_2), f"SR1: by default {VLLM} must not reach {VLLM_2}"
    _check(on, Expect("team-a-x-serving", TEAM_A, "serving", False, rule="SR1 intraServing opens nothing to tenants"))


@needs_nca
def test_monitoring_in_general_list_still_metrics_only():
    # Metrics on a port other than the model port: monitoring must not get the model port.
    cfg = NetworkPolicyConfig(ports=Ports(serving_metrics=[8081]))
    conn = nca.analyse(build_policies(cfg), [])
    _check(conn, Expect("monitoring->serving", PROMETHEUS, "serving", True, (8081,), exact=True,
                        rule="SR1 monitoring (also in servingAllowedFrom) gets metrics ports only"))
    _check(conn, Expect("litellm->serving", LITELLM, "serving", True, (8000,), exact=True,
                        rule="SR1 general sources get the model port only"))


@needs_nca
def test_monitoring_not_listed_gets_nothing():
    cfg = NetworkPolicyConfig(
        serving_allowed_from=["litellm", "inference", "agentgateway-system"],
        inference_allowed_from=["litellm", "agentgateway-system"],
    )
    conn = nca.analyse(build_policies(cfg), [])
    _check(conn, Expect("monitoring-x-serving", PROMETHEUS, "serving", False, rule="SR1 unlisted monitoring denied"))
    _check(conn, Expect("monitoring-x-inference", PROMETHEUS, "inference", False, rule="SR1 unlisted monitoring denied"))


@needs_nca
def test_empty_port_list_closes_instead_of_opening_all():
    # In NetworkPolicy an empty `ports` means every port; an empty config list must mean none.
    cfg = NetworkPolicyConfig(ports=Ports(gateway=[]))
    policies = build_policies(cfg)
    for m in policies:
        for rule in m["spec"].get("ingress", []):
            assert rule.get("ports", None) != [], f"{resource_name(m)} has an empty ports list (= all ports)"
    conn = nca.analyse(policies, [])
    _check(conn, Expect("litellm-x-gateway", LITELLM, GATEWAY, False, rule="SR1 empty gateway ports open nothing"))


@needs_nca
def test_many_tenants_are_all_denied():
    tenants = [f"tenant-{i:02d}" for i in range(25)]
    conn = nca.analyse(build_policies(NetworkPolicyConfig()), tenants)
    for t in tenants:
        assert not conn.between(t, "serving"), f"SR1: {t} must not reach serving on any port"
        assert not conn.between(t, "inference"), f"SR1: {t} must not reach inference on any port"
        assert conn.between(t, "litellm").allows(4000), f"SR1: {t} must reach litellm on 4000"


# ---------------------------------------------------------------- manifests


def _all_variants() -> list[NetworkPolicyConfig]:
    return [
        NetworkPolicyConfig(),
        NetworkPolicyConfig(managed_prometheus=True, gke_l7_proxy_ranges=["35.191.0.0/16"], intra_serving=True),
    ]


@pytest.mark.parametrize("cfg", _all_variants(), ids=["defaults", "all-options"])
def test_manifests_validate_against_kubernetes_schema(cfg):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for m in build_policies(cfg):
        try:
            kubernetes_validate.validate(m, "1.33.0", strict=True)
        except kubernetes_validate.ValidationError as e:  # pragma: no cover - failure path
            pytest.fail(f"{resource_name(m)} is not a valid Kubernetes 1.33 NetworkPolicy: {e.message}")


@pytest.mark.parametrize("cfg", _all_variants(), ids=["defaults", "all-options"])
def test_manifest_shape(cfg):
    policies = build_policies(cfg)
    assert policies == build_policies(cfg), "build_policies must be deterministic"
    names = [resource_name(m) for m in policies]
    assert len(names) == len(set(names))
    for ns in ("serving", "inference"):
        deny = [m for m in policies if m["metadata"]["namespace"] == ns and m["metadata"]["name"] == "default-deny-ingress"]
        assert len(deny) == 1 and deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for m in policies:
        assert m["apiVersion"] == "networking.k8s.io/v1" and m["kind"] == "NetworkPolicy"
        assert m["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "llm-platform",
            "app.kubernetes.io/part-of": "llm-platform-security",
        }
        assert m["metadata"]["namespace"] in ("serving", "inference")
        assert m["spec"]["policyTypes"] == ["Ingress"] and "egress" not in m["spec"]
        for rule in m["spec"].get("ingress", []):
            assert rule.get("from"), f"{resource_name(m)}: a rule without `from` allows every source"
            for peer in rule["from"]:
                assert "podSelector" not in peer, f"{resource_name(m)}: sources must not be selected by pod labels"
                if "namespaceSelector" in peer:
                    assert peer["namespaceSelector"] == {"matchLabels": {NAME_LABEL: peer["namespaceSelector"]["matchLabels"][NAME_LABEL]}}
                else:
                    assert set(peer) == {"ipBlock"} and cfg.gke_l7_proxy_ranges
            if "ports" not in rule:
                # Only intraServing opens every port, and only from `serving` itself.
                assert resource_name(m) == "serving-allow-intra-serving"
                assert rule["from"] == [{"namespaceSelector": {"matchLabels": {NAME_LABEL: "serving"}}}]


def _raw(**extra: object) -> dict[str, str]:
    raw = {
        "gcp:project": "p",
        "llm-platform:cluster": json.dumps(
            {"name": "c", "location": "europe-west4", "nodePools": [{"name": "system"}]}
        ),
    }
    raw.update({f"llm-platform:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return raw


def test_policies_do_not_depend_on_tenants():
    one = parse(_raw(tenants=["team-a"]))
    many = parse(_raw(tenants=[f"tenant-{i:04d}" for i in range(1000)]))
    assert len(many.tenants) == 1000
    a, b = build_policies(one.network_policy), build_policies(many.network_policy)
    assert len(a) == len(b)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    text = json.dumps(b)
    assert "tenant-0" not in text and "team-a" not in text, "SR1 policies must never name a tenant"


@pytest.mark.parametrize(
    "extra, key, words",
    [
        ({"networkPolicy": {"servingAllowedFrom": ["litellm", "litellm"]}}, "networkPolicy.servingAllowedFrom", ["twice"]),
        ({"networkPolicy": {"inferenceAllowedFrom": ["monitoring", "litellm", "monitoring"]}}, "networkPolicy.inferenceAllowedFrom", ["twice"]),
        ({"networkPolicy": {"ports": {"modelServer": [70000]}}}, "networkPolicy.ports.modelServer", ["modelServer", "70000", "1-65535"]),
        ({"networkPolicy": {"ports": {"gateway": [0]}}}, "networkPolicy.ports.gateway", ["gateway", "out of range"]),
        ({"networkPolicy": {"gkeL7ProxyRanges": ["35.191.0.0/33"]}}, "networkPolicy.gkeL7ProxyRanges", ["CIDR"]),
        ({"tenants": ["team-a", "serving"]}, "tenants", ["platform namespace"]),
        ({"tenants": ["team-a", "team-a"]}, "tenants", ["twice"]),
    ],
    ids=["serving-dup", "inference-dup", "port-too-big", "port-zero", "bad-cidr", "tenant-is-platform", "tenant-dup"],
)
def test_config_errors_name_the_key(extra, key, words):
    assert parse(_raw()).network_policy == NetworkPolicyConfig()
    with pytest.raises(ConfigError) as info:
        parse(_raw(**extra))
    msg = str(info.value)
    assert f"`llm-platform:{key}`" in msg, msg
    for w in words:
        assert w in msg, msg


def test_platform_namespaces_cover_sr1_roles():
    cfg = NetworkPolicyConfig()
    for ns in {"serving", "inference", *cfg.serving_allowed_from, *cfg.inference_allowed_from, "gmp-system"}:
        assert ns in PLATFORM_NAMESPACES, f"{ns} must be a platform namespace so no tenant can take its name"


# ---------------------------------------------------------------- matrix output


@needs_nca
def test_write_matrix_is_deterministic_and_lists_tenants(tmp_path):
    tenants = ["research", "chat"]
    policies = build_policies(NetworkPolicyConfig())
    nca.write_matrix(policies, tenants, tmp_path / "a")
    nca.write_matrix(policies, tenants, tmp_path / "b")
    for f in ("connectivity.md", "connectivity.svg"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f"{f} is not byte-identical"
    md = (tmp_path / "a" / "connectivity.md").read_text()
    svg = (tmp_path / "a" / "connectivity.svg").read_text()
    for t in tenants:
        assert f"| `{t}` | — | — | all |" in md, md  # computed by nca: denied serving and inference
        assert f">{t}<" in svg
    assert "| `litellm` | 8000 | 80, 8080 |" in md, md
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    import xml.etree.ElementTree as ET

    ET.fromstring(svg)  # well-formed


@needs_nca
def test_write_matrix_caps_tenants(tmp_path):
    tenants = [f"tenant-{i:03d}" for i in range(40)]
    nca.write_matrix(build_policies(NetworkPolicyConfig()), tenants, tmp_path)
    md = (tmp_path / "connectivity.md").read_text()
    svg = (tmp_path / "connectivity.svg").read_text()
    more = 40 - nca.TENANT_CAP
    assert f"+{more} more tenants" in md and f"+{more} more tenants" in svg
    assert "tenant-000" in svg and "tenant-039" not in svg


def test_missing_nca_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(nca, "nca_executable", lambda: None)
    with pytest.raises(nca.NcaError, match="nca.*not found"):
        nca.write_matrix(build_policies(NetworkPolicyConfig()), [], tmp_path)
    assert not (tmp_path / "connectivity.md").exists()


@needs_nca
def test_nca_failure_is_a_clear_error(tmp_path):
    bad = build_policies(NetworkPolicyConfig())
    bad[1]["spec"]["ingress"][0]["ports"][0]["port"] = 99999
    with pytest.raises(nca.NcaError, match="nca failed"):
        nca.write_matrix(bad, [], tmp_path)


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
    cfg = NetworkPolicyConfig(intra_serving=True)

    @pulumi.runtime.test
    def run():
        comp = NetworkPolicies("sr1", NetworkPoliciesArgs(config=cfg))
        return pulumi.Output.all(*[p.urn for p in comp.policies])

    run()
    expected = [resource_name(m) for m in build_policies(cfg)]
    assert ("llm-platform:security:NetworkPolicies", "sr1") in [(t, n) for t, n, _ in created]
    got = [(n, i) for t, n, i in created if t == "kubernetes:networking.k8s.io/v1:NetworkPolicy"]
    assert [n for n, _ in got] == expected
    first = got[0][1]
    assert first["metadata"]["namespace"] == "serving" and first["spec"]["podSelector"] == {}
