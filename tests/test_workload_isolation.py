"""Agent isolation (A) and the egress-locked serving profile (B): network proofs by nca, config refusals.

nca (network-config-analyzer) evaluates ingress *and* egress of the rendered NetworkPolicies over the
deployed-platform model in ``data/netpol-cluster/`` (plus its kube-dns pod, OTLP collector and
``agents`` namespace). IP destinations are checked with ``Connectivity.to_ip``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from components import yaml_io

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components import workload_isolation as wi  # noqa: E402
from components.config import (  # noqa: E402
    AgentIsolationConfig,
    ClusterDns,
    ConfigError,
    GatewayTarget,
    NetworkPolicyConfig,
    ServingEgressConfig,
    parse,
)
from components.network_policy import NAME_LABEL, REFERENCE_PORTS, build_policies  # noqa: E402
from tools import matrix, nca  # noqa: E402

AGENT = "agents/coding-agent-0"
LITELLM = "litellm/litellm-proxy-0"
OTEL = "monitoring/otel-collector-0"
PROMETHEUS = "monitoring/prometheus-0"
KUBE_DNS = "kube-system/kube-dns-0"
KONNECTIVITY = "kube-system/konnectivity-agent-0"
RAW_VLLM = "serving/raw-vllm-0"
EMBEDDINGS = "serving/embeddings-0"
RAW_EPP = "serving/raw-vllm-epp-0"
INF_GW = "inference/inference-gateway-0"
SIM_EPP = "inference/vllm-sim-epp-0"
SIM_0 = "inference/vllm-sim-0"
TEAM_A = "team-a/app-0"
EVIL = "team-evil/prometheus-0"
QWEN_CPU = "kserve/qwen-cpu-predictor-0"
DECODE = "llm-d/qwen-llmd-kserve-0"

needs_nca = pytest.mark.skipif(
    not nca.nca_available(),
    reason="`nca` (network-config-analyzer from requirements.txt) is not installed; install requirements to run the proofs",
)

AGENTS_ON = AgentIsolationConfig(enabled=True, namespaces=["agents"])
DNS_ALL = ClusterDns(node_local_dns_cache=True, cloud_dns=True)
LOCKED = ServingEgressConfig(namespaces=["serving", "inference"], model_hub_egress="internet-443")


def _analyse(policies):
    if not nca.nca_available():
        pytest.skip("`nca` not installed")
    return nca.analyse(policies, [])


@pytest.fixture(scope="module")
def agents_conn():
    # SR1 as deployed + agent isolation with every DNS path on.
    return _analyse(build_policies(NetworkPolicyConfig()) + wi.build_agent_policies(AGENTS_ON, DNS_ALL))


@pytest.fixture(scope="module")
def agents_kube_dns_only():
    return _analyse(build_policies(NetworkPolicyConfig()) + wi.build_agent_policies(AGENTS_ON, ClusterDns()))


def _locked_policies(se=LOCKED, np=None, dns=None, api=("172.16.0.32/28",)):
    np = np or NetworkPolicyConfig()
    dns = dns or ClusterDns()
    return build_policies(np) + wi.build_serving_egress_policies(se, np, dns, list(api))


@pytest.fixture(scope="module")
def locked_conn():
    return _analyse(_locked_policies())


@pytest.fixture(scope="module")
def sr1_conn():
    return _analyse(build_policies(NetworkPolicyConfig()))


# ---------------------------------------------------------------- A: agent namespaces


@needs_nca
def test_agent_reaches_the_model_gateway_on_its_port_only(agents_conn):
    got = agents_conn.between(AGENT, LITELLM)
    assert got == nca.Allowed(tcp=((4000, 4000),)), f"agents/agent-allow-model-gateway: agent -> litellm must be 4000 only, nca says {got}"


@needs_nca
def test_agent_reaches_telemetry_on_otlp_ports_only(agents_conn):
    got = agents_conn.between(AGENT, OTEL)
    assert got == nca.Allowed(tcp=((4317, 4318),)), f"agents/agent-allow-telemetry: agent -> collector must be 4317-4318, nca says {got}"
    # The telemetry rule is namespace-wide on the OTLP ports: Prometheus' pod gets the same ports, nothing else.
    assert not agents_conn.between(AGENT, PROMETHEUS).allows(9090), "agents: only OTLP ports into monitoring"


@needs_nca
def test_agent_dns_kube_dns_udp_and_tcp(agents_conn):
    got = agents_conn.between(AGENT, KUBE_DNS)
    assert got.allows(53, "UDP") and got.allows(53, "TCP"), f"agents/agent-allow-dns: kube-dns on UDP+TCP 53, nca says {got}"
    assert not got.allows(10054) and not agents_conn.between(AGENT, KONNECTIVITY), (
        f"agents/agent-allow-dns: only kube-dns pods on 53 in kube-system, nca says {got}"
    )


@needs_nca
def test_agent_dns_node_local_and_cloud_dns_only_when_configured(agents_conn, agents_kube_dns_only):
    for ip in ("169.254.20.10", "169.254.169.254"):
        on = agents_conn.to_ip(AGENT, ip)
        assert on.allows(53, "UDP") and on.allows(53, "TCP"), f"agents/agent-allow-dns: {ip}:53 with clusterDns on, nca says {on}"
        assert not agents_kube_dns_only.to_ip(AGENT, ip), f"agents/agent-allow-dns: {ip} closed when clusterDns is off"
    # Cloud DNS shares the metadata server's address: port 80 (credentials) stays closed for agents.
    assert not agents_conn.to_ip(AGENT, "169.254.169.254").allows(80), "agents: no metadata server (no node credentials)"
    assert not agents_conn.to_ip(AGENT, "169.254.169.252").allows(988), "agents: no gke-metadata-server"


@needs_nca
@pytest.mark.parametrize("ip", ["8.8.8.8", "10.128.0.5", "172.16.0.34", "140.82.112.3"])
def test_agent_reaches_no_outside_address(agents_conn, ip):
    assert not agents_conn.to_ip(AGENT, ip), f"agents/agent-default-deny: agent must not reach {ip}, nca says {agents_conn.to_ip(AGENT, ip)}"


@needs_nca
@pytest.mark.parametrize("dst", ["serving", "inference", "kserve", "llm-d", "team-a", "default", "agentgateway-system"])
def test_agent_reaches_no_other_namespace(agents_conn, dst):
    assert not agents_conn.between(AGENT, dst), f"agents/agent-default-deny: agent must not reach {dst}, nca says {agents_conn.between(AGENT, dst)}"


@needs_nca
@pytest.mark.parametrize("src", [TEAM_A, EVIL, LITELLM, PROMETHEUS, INF_GW, "8.8.8.8"])
def test_nothing_reaches_the_agents(agents_conn, src):
    got = agents_conn.from_ip(src, "agents") if src[0].isdigit() else agents_conn.between(src, "agents")
    assert not got, f"agents/agent-default-deny: {src} must not reach the agents, nca says {got}"


@needs_nca
def test_mutable_name_label_grants_nothing(agents_conn):
    # `agents` carries `name: litellm`; policies select by kubernetes.io/metadata.name only.
    for m in wi.build_agent_policies(AGENTS_ON, DNS_ALL):
        for rule in m["spec"].get("egress", []):
            for peer in rule["to"]:
                if "namespaceSelector" in peer:
                    assert list(peer["namespaceSelector"]["matchLabels"]) == [NAME_LABEL], wi.resource_name(m)
    assert not agents_conn.between(TEAM_A, "agents"), "a namespace labelled name: litellm is still just `agents`"


@needs_nca
def test_agent_gateway_list_is_configurable():
    cfg = AgentIsolationConfig(
        enabled=True, namespaces=["agents"],
        model_gateways=[GatewayTarget(namespace="inference", ports=[80])],
    )
    conn = _analyse(build_policies(NetworkPolicyConfig()) + wi.build_agent_policies(cfg, ClusterDns()))
    assert not conn.between(AGENT, LITELLM), "litellm is not a gateway in this config"
    # The agentgateway proxy in `inference` is SR1-protected: agents are not trusted callers, so
    # SR1's ingress still refuses them; naming a protected namespace does not bypass SR1.
    assert not conn.between(AGENT, INF_GW), "SR1 ingress still decides for protected namespaces"


def test_agent_policies_off_by_default():
    assert wi.build_agent_policies(AgentIsolationConfig(), DNS_ALL) == []
    assert wi.agent_admission_policy(AgentIsolationConfig(), "Enforce") is None


# ---------------------------------------------------------------- B: egress-locked serving


@needs_nca
@pytest.mark.parametrize("dst", ["serving", "inference"])
def test_tenant_reaches_nothing_in_a_locked_namespace(locked_conn, dst):
    for src in (TEAM_A, EVIL, "team-b/app-0", "team-a/litellm-impostor-0", "default/debug-0"):
        got = locked_conn.between(src, dst)
        assert not got, f"{dst}/default-deny-ingress: tenant {src} must reach nothing (no probe hole), nca says {got}"


@needs_nca
@pytest.mark.parametrize("src,dst,port,rule", [
    (LITELLM, EMBEDDINGS, 8080, "serving/allow-platform-namespaces (litellm)"),
    (INF_GW, RAW_VLLM, 8000, "inference/allow-platform-egress + serving/allow-platform-namespaces"),
    (INF_GW, RAW_EPP, 9002, "inference/allow-platform-egress (gateway -> endpoint picker)"),
    (RAW_EPP, RAW_VLLM, 8000, "serving/allow-in-namespace-egress + allow-in-namespace-clients (picker)"),
    (RAW_EPP, RAW_VLLM, 9090, "serving: endpoint picker -> model server metrics"),
    (SIM_EPP, SIM_0, 8000, "inference/allow-in-namespace-egress (picker)"),
    (PROMETHEUS, RAW_VLLM, 8000, "serving/allow-platform-namespaces (Prometheus scrape)"),
    (PROMETHEUS, SIM_EPP, 9090, "inference/allow-platform-namespaces (Prometheus scrape)"),
    (INF_GW, QWEN_CPU, 8080, "inference -> kserve (unlocked namespace, SR1 ingress)"),
])
def test_locked_profile_keeps_every_server_flow(locked_conn, src, dst, port, rule):
    assert locked_conn.allows(src, dst, port), f"{rule}: {src} must reach {dst}:{port}, nca says {locked_conn.between(src, dst)}"


@needs_nca
@pytest.mark.parametrize("src, downloads", [(RAW_VLLM, True), (EMBEDDINGS, True), (SIM_0, False)])
def test_model_servers_reach_only_dns_and_hubs(locked_conn, src, downloads):
    for dst in ("litellm", "team-a", "monitoring", "agents", "kserve", "llm-d", "default"):
        got = locked_conn.between(src, dst)
        assert not got, f"{src.split('/')[0]}/default-deny-egress: {src} must not reach {dst}, nca says {got}"
    assert locked_conn.between(src, KUBE_DNS).allows(53, "UDP"), f"allow-dns-egress: {src} -> kube-dns UDP 53"
    # No metadataClients by default: no reference serving pod uses Workload Identity.
    assert not locked_conn.to_ip(src, "169.254.169.254"), f"{src}: no metadata server (no Workload Identity user)"
    assert not locked_conn.to_ip(src, "169.254.169.252"), f"{src}: no gke-metadata-server"
    hub = locked_conn.to_ip(src, "18.164.174.10")  # a public address (huggingface.co's CDN range)
    if downloads:  # modelHubClients: the vLLM and TEI servers download their weights
        assert hub == nca.Allowed(tcp=((443, 443),)), f"allow-model-hub-egress-model-server: public 443 only, nca says {hub}"
    else:
        assert not hub, f"{src} downloads nothing: no internet, nca says {hub}"
    for private in ("10.128.0.5", "172.16.0.34", "192.168.1.1", "100.64.0.1", "169.254.169.254"):
        assert not locked_conn.to_ip(src, private).allows(443), f"allow-model-hub-egress: {private}:443 excluded"


@needs_nca
def test_api_server_only_for_labelled_clients(locked_conn):
    assert locked_conn.to_ip(RAW_EPP, "172.16.0.34").allows(443), "allow-api-server-egress: endpoint picker -> API server 443"
    assert not locked_conn.to_ip(RAW_VLLM, "172.16.0.34"), "model servers get no API server egress"


@needs_nca
def test_platform_egress_only_for_platform_clients(locked_conn):
    # SR1 admits only `inference`'s gateway proxies into the other protected namespaces; the egress lock
    # lets only the gateway proxy and the pickers out to them, not the model servers there.
    assert locked_conn.allows(INF_GW, QWEN_CPU, 8080), "inference/allow-platform-egress-gateway-proxy"
    assert not locked_conn.between(SIM_0, "serving"), "inference/default-deny-egress: vllm-sim must not reach serving"


@needs_nca
def test_model_hub_none_closes_the_internet():
    conn = _analyse(_locked_policies(se=ServingEgressConfig(namespaces=["serving"])))
    assert not conn.to_ip(RAW_VLLM, "18.164.174.10"), "modelHubEgress none: no internet"
    assert not conn.to_ip(RAW_VLLM, "169.254.169.254"), "no metadataClients: metadata server closed"


@needs_nca
def test_without_the_profile_servers_reach_anything(sr1_conn):
    # Control: SR1 alone does not restrict egress, so the proofs above test the profile.
    assert sr1_conn.to_ip(RAW_VLLM, "8.8.8.8").everything
    assert sr1_conn.between(RAW_VLLM, "team-a")


@needs_nca
def test_locked_profile_with_port_scoping_keeps_flows():
    np = NetworkPolicyConfig(ports=REFERENCE_PORTS)
    conn = _analyse(_locked_policies(np=np))
    assert conn.allows(INF_GW, RAW_VLLM, 8000) and conn.allows(INF_GW, RAW_EPP, 9002)
    assert not conn.allows(INF_GW, RAW_VLLM, 8123), "allow-platform-egress follows networkPolicy.ports"


def test_fqdn_choice_renders_an_fqdn_network_policy():
    policies = wi.build_serving_egress_policies(
        ServingEgressConfig(namespaces=["serving"], model_hub_egress="fqdn"), NetworkPolicyConfig(), ClusterDns(), []
    )
    fqdn = [m for m in policies if m["kind"] == "FQDNNetworkPolicy"]
    # One per modelHubClients entry, selecting only those pods.
    assert [m["metadata"]["name"] for m in fqdn] == ["allow-model-hubs-model-server", "allow-model-hubs-benchmark"]
    assert fqdn[0]["apiVersion"] == "networking.gke.io/v1alpha1" and fqdn[0]["spec"]["podSelector"]
    assert fqdn[0]["spec"]["egress"][0]["matches"] == [
        {"name": "huggingface.co"}, {"pattern": "*.huggingface.co"}, {"pattern": "*.hf.co"}, {"pattern": "*.xethub.hf.co"}
    ]
    assert not any(m["metadata"]["name"].startswith("allow-model-hub-egress") for m in policies), "no ipBlock with fqdn"


# ---------------------------------------------------------------- manifests


def _variants():
    return (
        wi.build_agent_policies(AGENTS_ON, DNS_ALL)
        + _locked_policies(dns=DNS_ALL)
        + _locked_policies(se=ServingEgressConfig(namespaces=["llm-d"]), np=NetworkPolicyConfig(ports=REFERENCE_PORTS))
    )


def test_network_policies_validate_against_kubernetes_schema():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for m in _variants():
        if m["kind"] != "NetworkPolicy":
            continue
        try:
            kubernetes_validate.validate(m, "1.33.0", strict=True)
        except kubernetes_validate.ValidationError as e:  # pragma: no cover - failure path
            pytest.fail(f"{wi.resource_name(m)} is not a valid Kubernetes 1.33 NetworkPolicy: {e.message}")


def test_every_egress_rule_names_destinations_and_ports():
    for m in _variants():
        if m["kind"] != "NetworkPolicy" or m["metadata"]["labels"] != wi.LABELS:
            continue
        for rule in m["spec"].get("egress", []):
            assert rule.get("to"), f"{wi.resource_name(m)}: an egress rule without `to` allows every destination"
            if m["metadata"]["name"] != "allow-in-namespace-egress" and not m["metadata"]["name"].startswith("allow-platform-egress"):
                assert rule.get("ports"), f"{wi.resource_name(m)}: egress to {rule['to']} must name ports"
        assert m["spec"].get("ingress") is None, f"{wi.resource_name(m)}: these policies never open ingress"


# ---------------------------------------------------------------- config refusals


def _raw(**extra):
    raw = {
        "gcp:project": "p",
        "llm-platform:security": "true",
        "llm-platform:cluster": json.dumps(
            {"name": "c", "location": "europe-west4", "nodePools": [{"name": "system"}, {"name": "sandbox", "sandbox": True}]}
        ),
    }
    raw.update({f"llm-platform:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return raw


def test_defaults_are_off():
    s = parse(_raw())
    assert not s.agent_isolation.enabled and not s.serving_egress.enabled and not s.network_policy_logging.enabled
    assert s.cluster.datapath_observability.metrics is False and s.cluster.datapath_observability.relay is False
    assert s.cluster.fqdn_network_policy is False and wi.build_all(s) == []


def test_agent_isolation_accepted_with_a_sandbox_pool():
    s = parse(_raw(agentIsolation={"enabled": True, "namespaces": ["agents"]}))
    assert s.cluster.sandbox_pools == ["sandbox"]
    kinds = sorted(m["kind"] for m in wi.build_all(s))
    assert kinds == ["ClusterPolicy"] + ["NetworkPolicy"] * 4, kinds


@pytest.mark.parametrize("raw, key, words", [
    (lambda: {**_raw(agentIsolation={"enabled": True, "namespaces": ["agents"]}),
              "llm-platform:cluster": json.dumps({"name": "c", "location": "europe-west4", "nodePools": [{"name": "system"}]})},
     "", ["GKE Sandbox node pool", "sandbox: true"]),
    (lambda: {k: v for k, v in {**_raw(agentIsolation={"enabled": True, "namespaces": ["agents"]}),
              "llm-platform:existingCluster": json.dumps({"context": "x", "networkPolicyEnforced": True})}.items()
              if k not in ("llm-platform:cluster", "gcp:project")},
     "", ["existingCluster.gkeSandbox"]),
    (lambda: _raw(agentIsolation={"enabled": True}), "agentIsolation", ["namespaces", "empty"]),
    (lambda: _raw(agentIsolation={"enabled": True, "namespaces": ["litellm"]}), "agentIsolation.namespaces", ["platform namespace"]),
    (lambda: _raw(agentIsolation={"enabled": True, "namespaces": ["agents"], "modelGateways": [{"namespace": "agents", "ports": [4000]}]}),
     "agentIsolation", ["also an agent namespace"]),
    (lambda: _raw(agentIsolation={"enabled": True, "namespaces": ["agents"], "telemetryPorts": [0]}), "agentIsolation.telemetryPorts", ["out of range"]),
    (lambda: _raw(agentIsolation={"enabled": True, "namespaces": ["agents"]}, networkPolicy={"allowedFrom": ["litellm", "agents"]}),
     "", ["agents", "protected or trusted"]),
    (lambda: _raw(servingEgress={"namespaces": ["litellm"]}), "", ["servingEgress.namespaces", "litellm", "protectedNamespaces"]),
    (lambda: _raw(servingEgress={"namespaces": ["serving"], "modelHubEgress": "fqdn"}), "", ["fqdnNetworkPolicy"]),
    (lambda: _raw(servingEgress={"namespaces": ["serving"], "modelHubEgress": "everything"}), "servingEgress.modelHubEgress", ["internet-443"]),
    (lambda: _raw(servingEgress={"namespaces": ["serving"], "apiServerCidrs": ["10.0.0.1/8"]}), "servingEgress.apiServerCidrs", ["CIDR"]),
    (lambda: _raw(servingEgress={"namespaces": ["serving"], "modelHubFqdns": ["https://hf.co"]}), "servingEgress.modelHubFqdns", ["DNS name"]),
], ids=["no-sandbox-pool", "existing-without-sandbox", "no-namespaces", "platform-namespace",
        "gateway-is-agent-ns", "bad-port", "agents-trusted", "egress-unprotected", "fqdn-unsupported",
        "hub-choice", "bad-cidr", "bad-fqdn"])
def test_impossible_combinations_are_refused(raw, key, words):
    with pytest.raises(ConfigError) as info:
        parse(raw())
    msg = str(info.value)
    assert (f"`llm-platform:{key}`" in msg) if key else ("`llm-platform`" in msg), msg
    for w in words:
        assert w in msg, msg


def test_security_off_makes_both_inactive():
    # `security` is the master switch of the group: with it off, A and B register nothing, and their
    # combination rules (sandbox pool, protected namespaces) do not apply.
    raw = {**_raw(agentIsolation={"enabled": True, "namespaces": ["agents"]}, servingEgress={"namespaces": ["serving"]}),
           "llm-platform:security": "false",
           "llm-platform:cluster": json.dumps({"name": "c", "location": "europe-west4", "nodePools": [{"name": "system"}]})}
    s = parse(raw)
    assert s.agent_isolation.enabled and wi.build_all(s) == []
    raw["llm-platform:security"] = "true"
    with pytest.raises(ConfigError, match="GKE Sandbox node pool"):
        parse(raw)


def test_fqdn_accepted_when_the_cluster_enables_it():
    raw = _raw(servingEgress={"namespaces": ["serving"], "modelHubEgress": "fqdn"})
    cluster = json.loads(raw["llm-platform:cluster"])
    raw["llm-platform:cluster"] = json.dumps({**cluster, "fqdnNetworkPolicy": True})
    s = parse(raw)
    assert any(m["kind"] == "FQDNNetworkPolicy" for m in wi.build_all(s))


def test_private_cluster_api_server_default():
    raw = _raw(servingEgress={"namespaces": ["serving"]})
    cluster = json.loads(raw["llm-platform:cluster"])
    raw["llm-platform:cluster"] = json.dumps({**cluster, "privateNodes": True, "controlPlaneCidr": "172.16.0.32/28"})
    assert wi.api_server_cidrs(parse(raw)) == ["172.16.0.32/28"]
    assert wi.api_server_cidrs(parse(_raw(servingEgress={"namespaces": ["serving"]}))) == []


def test_dev_stack_turns_everything_on():
    cfg = yaml_io.load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    s = parse({k: v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()}, "dev")
    assert s.agent_isolation.enabled and s.cluster.sandbox_pools, "Pulumi.dev.yaml: agent isolation with a sandbox pool"
    assert s.serving_egress.enabled, "Pulumi.dev.yaml: egress-locked serving profile on"
    assert s.network_policy_logging.denied, "Pulumi.dev.yaml: denied flows logged"
    assert s.cluster.datapath_observability.metrics and s.cluster.datapath_observability.relay


@needs_nca
def test_matrix_shows_the_agent_namespace(tmp_path):
    policies = build_policies(NetworkPolicyConfig()) + wi.build_agent_policies(AGENTS_ON, ClusterDns())
    matrix.write_matrix(policies, ["team-a"], tmp_path)
    md = (tmp_path / "connectivity.md").read_text()
    # computed by nca: agents reach LiteLLM:4000 and the OTLP collector only
    assert "| `agents` | — | — | — | — | 4000 | 4317-4318 | n/a |" in md, md
    assert "| `team-a` | — | — | — | — | 4000 | 3000, 4317-4318 | — |" in md, md  # nothing reaches the agents
