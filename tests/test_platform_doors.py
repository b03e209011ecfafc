"""The doors around SR1, proven by nca over the deployed-platform model (data/netpol-cluster/).

LiteLLM's namespace and database, monitoring, the Gateway proxies' egress, the API server's webhook
calls on private clusters, the benchmarks, and the dev egress lock (model hubs, metadata server).
Each door is checked both ways: what a tenant (or a model server) must not reach, and the platform
flow that must keep working. A control analysis without the policy under test shows the denial is
the policy's doing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components import workload_isolation as wi
from components.cluster import webhook_firewall_ports
from components.config import ConfigError, InNamespaceClient, NetworkPolicyConfig, ServingEgressConfig, parse
from components.network_policy import build_policies, webhook_ports
from tests.platform_pods import (
    AGENT,
    AGW_CONTROLLER,
    CNPG,
    DECODE,
    EMBEDDINGS,
    GRAFANA,
    GUIDELLM_BENCH,
    INF_GW,
    KEDA,
    KONNECTIVITY,
    KSERVE_CTRL,
    KSERVE_GW,
    KUBE_DNS,
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
    SCHEDULER,
    SIM_0,
    SIM_EPP,
    TEAM_A,
    VLLM_BENCH,
)
from tools import nca

ROOT = Path(__file__).resolve().parent.parent

needs_nca = pytest.mark.skipif(not nca.nca_available(), reason="`nca` (requirements.txt) is not installed")

TENANTS = [TEAM_A, "team-b/app-0", "team-evil/prometheus-0", "team-a/litellm-impostor-0",
           "team-a/platform-impostor-0", "default/debug-0"]
GATEWAYS = [INF_GW, KSERVE_GW, LLMD_GW]
BENCHES = [VLLM_BENCH, GUIDELLM_BENCH]
CONTROL_PLANE = "172.16.0.32/28"
CONTROL_PLANE_IP = "172.16.0.34"
PUBLIC_IP = "18.164.174.10"  # a public address (huggingface.co's CDN range)


def only(*ports: int) -> nca.Allowed:
    return nca.Allowed(tcp=nca._merge((p, p) for p in ports))


def _analyse(policies):
    if not nca.nca_available():
        pytest.skip("`nca` not installed")
    return nca.analyse([p for p in policies if p["kind"] == "NetworkPolicy"], [])


def _without(policies, name):
    return [p for p in policies if p["metadata"]["name"] != name]


def _stack(stack: str):
    cfg = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return parse({k: v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()}, stack)


def _stack_policies(stack: str):
    s = _stack(stack)
    cidr = s.cluster.control_plane_cidr if s.cluster is not None else None
    return build_policies(s.network_policy, cidr) + wi.build_all(s)


@pytest.fixture(scope="module")
def sr1():
    return _analyse(build_policies(NetworkPolicyConfig()))


@pytest.fixture(scope="module")
def private():
    # A VPC-peering private cluster (prod's controlPlaneCidr).
    return _analyse(build_policies(NetworkPolicyConfig(), CONTROL_PLANE))


@pytest.fixture(scope="module")
def dev():
    # Pulumi.dev.yaml as deployed: SR1, agents, and `serving` egress-locked with internet-443.
    return _analyse(_stack_policies("dev"))


# ---------------------------------------------------------------- litellm and its database


@needs_nca
@pytest.mark.parametrize("src", TENANTS + [AGENT, KONNECTIVITY])
def test_tenants_reach_only_the_proxy_port(sr1, src):
    assert sr1.between(src, LITELLM) == only(4000), f"litellm/allow-proxy: {src} -> LiteLLM 4000 only, nca says {sr1.between(src, LITELLM)}"
    for db in (PG_PRIMARY, PG_REPLICA):
        assert not sr1.between(src, db), f"litellm/allow-database-clients: {src} must not reach {db}, nca says {sr1.between(src, db)}"


@needs_nca
@pytest.mark.parametrize("src", [RAW_VLLM, INF_GW, QWEN_CPU, DECODE, OTEL, KEDA, AGW_CONTROLLER, "team-evil/prometheus-0"])
def test_platform_pods_without_a_need_do_not_reach_the_database(sr1, src):
    assert not sr1.between(src, "litellm").allows(5432) and not sr1.between(src, PG_PRIMARY), (
        f"litellm/allow-database-clients: {src} has no business with litellm-pg, nca says {sr1.between(src, PG_PRIMARY)}"
    )


@needs_nca
@pytest.mark.parametrize("src, dst, want", [
    (LITELLM, PG_PRIMARY, only(5432)),          # virtual keys, budgets, spend
    (MIGRATIONS, PG_PRIMARY, only(5432)),       # the chart's prisma migration Job
    (PG_REPLICA, PG_PRIMARY, only(5432, 8000)),  # streaming replication between instances
    (CNPG, PG_PRIMARY, only(5432, 8000)),       # the operator: status port and Postgres
    (CNPG, PG_REPLICA, only(5432, 8000)),
    (GRAFANA, PG_PRIMARY, only(5432)),          # grafana-litellm's read-only spend datasource
    (PROMETHEUS, PG_PRIMARY, only(9187)),       # CNPG metrics only
])
def test_database_clients_reach_exactly_their_ports(sr1, src, dst, want):
    assert sr1.between(src, dst) == want, f"litellm/allow-database-clients: {src} -> {dst} must be {want}, nca says {sr1.between(src, dst)}"


@needs_nca
def test_without_the_litellm_policies_the_database_is_open():
    # Control: the denials above come from the litellm policies.
    cfg = NetworkPolicyConfig(platform_services={"litellm": False})
    conn = _analyse(build_policies(cfg))
    assert conn.between(TEAM_A, PG_PRIMARY).everything


# ---------------------------------------------------------------- monitoring


@needs_nca
@pytest.mark.parametrize("src", TENANTS + [RAW_VLLM])
def test_tenants_reach_only_otlp_and_grafana(sr1, src):
    assert sr1.between(src, OTEL) == only(4317, 4318), f"monitoring/allow-otlp: {src} -> collector, nca says {sr1.between(src, OTEL)}"
    assert sr1.between(src, GRAFANA) == only(3000), f"monitoring/allow-grafana: {src} -> Grafana, nca says {sr1.between(src, GRAFANA)}"
    for dst in (PROMETHEUS, PROM_OPERATOR):
        assert not sr1.between(src, dst), f"monitoring/default-deny-ingress: {src} must not reach {dst}, nca says {sr1.between(src, dst)}"


@needs_nca
def test_monitoring_keeps_its_platform_flows(sr1):
    assert sr1.between(KEDA, PROMETHEUS) == only(9090), "monitoring/allow-prometheus-queries: KEDA's ScaledObject queries"
    assert sr1.allows(GRAFANA, PROMETHEUS, 9090), "monitoring/allow-in-namespace: Grafana's Prometheus datasource"
    assert sr1.allows(PROMETHEUS, PROM_OPERATOR, 10250), "monitoring/allow-in-namespace: Prometheus scrapes the operator"
    assert sr1.between(KONNECTIVITY, PROM_OPERATOR) == only(10250), "monitoring/allow-api-server-webhooks"
    assert sr1.between(AGENT, OTEL) == only(4317, 4318), "agents export telemetry"
    assert not sr1.between(KEDA, GRAFANA).allows(9090) and not sr1.between(LITELLM, PROMETHEUS)


# ---------------------------------------------------------------- gateway proxies


@needs_nca
@pytest.mark.parametrize("gw", GATEWAYS)
def test_gateway_proxies_reach_no_tenant_and_no_litellm(sr1, gw):
    for dst in (TEAM_A, "team-a", "team-b", "team-evil", "default", "litellm", "agents", "keda", "cnpg-system"):
        got = sr1.between(gw, dst)
        assert not got, f"{gw.split('/')[0]}/allow-gateway-proxy-egress: {gw} must not reach {dst}, nca says {got}"
    for ip in ("10.128.0.5", "192.168.1.1", CONTROL_PLANE_IP):
        assert not sr1.to_ip(gw, ip), f"{gw} must not reach the private address {ip}"
    assert not sr1.to_ip(gw, "169.254.169.254").allows(80), f"{gw}: no metadata server credentials"


@needs_nca
def test_a_gateway_proxy_without_the_egress_policy_would_deliver_to_a_tenant(sr1):
    # Control: the tenant denial above is allow-gateway-proxy-egress's doing.
    conn = _analyse(_without(build_policies(NetworkPolicyConfig()), "allow-gateway-proxy-egress"))
    assert conn.between(KSERVE_GW, TEAM_A).everything and not sr1.between(KSERVE_GW, TEAM_A)


@needs_nca
@pytest.mark.parametrize("gw, dst, port", [
    (INF_GW, RAW_EPP, 9002), (INF_GW, RAW_VLLM, 8000), (INF_GW, SIM_EPP, 9002), (INF_GW, SIM_0, 8000),
    (KSERVE_GW, QWEN_CPU, 8080), (LLMD_GW, SCHEDULER, 9002), (LLMD_GW, DECODE, 8000),
])
def test_gateway_proxies_keep_the_serving_side(sr1, gw, dst, port):
    assert sr1.allows(gw, dst, port), f"allow-gateway-proxy-egress + SR1 ingress: {gw} -> {dst}:{port}, nca says {sr1.between(gw, dst)}"


@needs_nca
@pytest.mark.parametrize("gw", GATEWAYS)
def test_gateway_proxies_reach_what_they_need(sr1, gw):
    dns = sr1.between(gw, KUBE_DNS)
    assert dns.allows(53, "UDP") and dns.allows(53, "TCP") and not dns.allows(10054), f"{gw}: kube-dns 53 only, nca says {dns}"
    assert sr1.to_ip(gw, "169.254.20.10").allows(53, "UDP"), f"{gw}: NodeLocal DNSCache"
    assert sr1.between(gw, AGW_CONTROLLER) == only(9978), f"{gw}: the controller's xDS only, nca says {sr1.between(gw, AGW_CONTROLLER)}"
    assert sr1.between(gw, OTEL) == only(4317, 4318), f"{gw}: OTLP telemetry, nca says {sr1.between(gw, OTEL)}"


@needs_nca
def test_only_inference_gateway_calls_external_providers(sr1):
    assert sr1.to_ip(INF_GW, PUBLIC_IP) == only(443), "inference/allow-gateway-internet-egress: Anthropic for claude-haiku"
    for gw in (KSERVE_GW, LLMD_GW):
        assert not sr1.to_ip(gw, PUBLIC_IP), f"{gw} is not in gatewayInternetEgress: no internet"


# ---------------------------------------------------------------- webhooks on private clusters


@needs_nca
@pytest.mark.parametrize("dst, port", [(KSERVE_CTRL, 9443), (PROM_OPERATOR, 10250)])
def test_webhooks_from_konnectivity_and_the_private_control_plane(sr1, private, dst, port):
    # PSC clusters: through the Konnectivity agents; VPC-peering private clusters: from controlPlaneCidr.
    assert sr1.between(KONNECTIVITY, dst) == only(port) and private.between(KONNECTIVITY, dst) == only(port)
    assert private.from_ip(CONTROL_PLANE_IP, dst) == only(port), f"{dst}: {CONTROL_PLANE_IP} on {port} only"
    assert not sr1.from_ip(CONTROL_PLANE_IP, dst), "without a private control plane its range gets nothing"


@needs_nca
@pytest.mark.parametrize("dst, want", [
    (RAW_VLLM, only()), (INF_GW, only()), (DECODE, only()), (PG_PRIMARY, only()),
    # the webhook allow selects every pod of its namespace, on the webhook port only
    (QWEN_CPU, only(9443)), (PROMETHEUS, only(10250)),
    (LITELLM, only(4000)),  # the proxy port is open to every source
])
def test_the_control_plane_range_reaches_webhook_ports_only(private, dst, want):
    got = private.from_ip(CONTROL_PLANE_IP, dst)
    assert got == want, f"{CONTROL_PLANE_IP} -> {dst} must be {want or 'nothing'}, nca says {got}"


def test_firewall_opens_the_webhook_ports_gke_does_not():
    assert webhook_firewall_ports(webhook_ports(NetworkPolicyConfig())) == ["9443"]
    custom = NetworkPolicyConfig(webhook_ports={"kserve": [9443, 8443], "monitoring": [10250]})
    assert webhook_firewall_ports(webhook_ports(custom)) == ["8443", "9443"], "GKE's own rule opens 443 and 10250"
    off = NetworkPolicyConfig(protected_namespaces=["serving"])
    assert webhook_ports(off) == [10250], "kserve's default entry applies only while kserve is protected"


def test_prod_renders_the_control_plane_range():
    webhook = [p for p in _stack_policies("prod") if p["metadata"]["name"] == "allow-api-server-webhooks"]
    assert {p["metadata"]["namespace"] for p in webhook} == {"kserve", "monitoring"}
    for p in webhook:
        assert {"ipBlock": {"cidr": "172.16.0.32/28"}} in p["spec"]["ingress"][0]["from"], p["metadata"]


# ---------------------------------------------------------------- benchmarks


@needs_nca
@pytest.mark.parametrize("conn_name", ["sr1", "dev"])
@pytest.mark.parametrize("bench", BENCHES)
def test_benchmarks_reach_every_target(request, conn_name, bench):
    conn = request.getfixturevalue(conn_name)
    for gw in GATEWAYS:
        assert conn.between(bench, gw) == only(80), f"{conn_name}: {bench} -> {gw} listener 80 only, nca says {conn.between(bench, gw)}"
    assert conn.between(bench, LITELLM) == only(4000), f"{conn_name}: {bench} -> LiteLLM"
    assert conn.allows(bench, RAW_VLLM, 8000) and conn.allows(bench, EMBEDDINGS, 8080)
    for dst in (QWEN_CPU, DECODE, SIM_0, PG_PRIMARY) + ((TEAM_A,) if conn_name == "dev" else ()):
        assert not conn.between(bench, dst), f"{conn_name}: {bench} must not reach {dst}, nca says {conn.between(bench, dst)}"


@needs_nca
@pytest.mark.parametrize("src", [RAW_VLLM, EMBEDDINGS, RAW_EPP, "team-a/platform-impostor-0"])
def test_only_the_benchmarks_of_serving_reach_the_other_gateways(sr1, src):
    for gw in (KSERVE_GW, LLMD_GW):
        assert not sr1.between(src, gw), f"allow-benchmarks-to-gateways: {src} is no benchmark in serving, nca says {sr1.between(src, gw)}"


@needs_nca
def test_dev_benchmarks_download_their_tokenizer(dev):
    assert dev.to_ip(VLLM_BENCH, PUBLIC_IP) == only(443), "allow-model-hub-egress-benchmark"


# ---------------------------------------------------------------- trusted namespaces, trusted by pod


@needs_nca
@pytest.mark.parametrize("src", [GRAFANA, OTEL, PG_PRIMARY, MIGRATIONS, AGW_CONTROLLER, SIM_0])
def test_dev_untrusted_pods_of_trusted_namespaces_reach_no_model_server(dev, src):
    # Tenants reach Grafana (3000) and the collector (4317/4318): neither may be a path to a model server.
    for dst in (RAW_VLLM, EMBEDDINGS, RAW_EPP, INF_GW, QWEN_CPU, DECODE):
        if dst.split("/")[0] != src.split("/")[0]:
            assert not dev.between(src, dst), f"dev: {src} is no trusted pod, must not reach {dst}, nca says {dev.between(src, dst)}"


@needs_nca
@pytest.mark.parametrize("src, dst, port", [
    (LITELLM, EMBEDDINGS, 8080), (LITELLM, INF_GW, 80), (LITELLM, KSERVE_GW, 80), (LITELLM, LLMD_GW, 80),
    (PROMETHEUS, RAW_VLLM, 8000), (PROMETHEUS, RAW_EPP, 9090), (PROMETHEUS, INF_GW, 15020), (PROMETHEUS, SCHEDULER, 9090),
    (INF_GW, RAW_EPP, 9002), (INF_GW, RAW_VLLM, 8000),
])
def test_dev_trusted_pods_keep_their_flows(dev, src, dst, port):
    assert dev.allows(src, dst, port), f"dev: {src} -> {dst}:{port} must stay open, nca says {dev.between(src, dst)}"


# ---------------------------------------------------------------- dev egress lock


@needs_nca
def test_dev_internet_only_for_the_pods_that_download(dev):
    for src in (RAW_VLLM, EMBEDDINGS):
        assert dev.to_ip(src, PUBLIC_IP) == only(443), f"allow-model-hub-egress-model-server: {src}"
    assert not dev.to_ip(RAW_EPP, PUBLIC_IP), "the endpoint picker downloads nothing: no internet"
    for src in (RAW_VLLM, EMBEDDINGS, RAW_EPP, VLLM_BENCH):
        for ip, port in (("169.254.169.254", 80), ("169.254.169.252", 988)):
            assert not dev.to_ip(src, ip).allows(port), f"dev: no metadataClients, {src} must not reach {ip}:{port}"
    assert not dev.between(RAW_VLLM, LITELLM) and not dev.between(RAW_VLLM, KSERVE_GW), "model servers stay locked"


@needs_nca
def test_metadata_server_only_for_metadata_clients():
    s = _stack("dev")
    se = ServingEgressConfig(
        namespaces=["serving"], model_hub_egress="internet-443",
        metadata_clients=[InNamespaceClient(name="endpoint-picker", label="inferencepool")],
    )
    conn = _analyse(build_policies(s.network_policy) + wi.build_serving_egress_policies(se, s.network_policy, s.cluster_dns, []))
    assert conn.to_ip(RAW_EPP, "169.254.169.254").allows(80) and conn.to_ip(RAW_EPP, "169.254.169.252").allows(988)
    assert not conn.to_ip(RAW_VLLM, "169.254.169.254"), "only the listed pods get the metadata server"


# ---------------------------------------------------------------- config


def _raw(**extra: object) -> dict[str, str]:
    raw = {
        "gcp:project": "p",
        "llm-platform:security": "true",
        "llm-platform:cluster": json.dumps({"name": "c", "location": "europe-west4", "nodePools": [{"name": "system"}]}),
    }
    raw.update({f"llm-platform:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return raw


@pytest.mark.parametrize("extra, key, words", [
    ({"networkPolicy": {"protectedNamespaces": ["serving", "litellm"]}}, "networkPolicy", ["litellm", "platformServices"]),
    ({"networkPolicy": {"webhookPorts": {"keda": [9443]}}}, "networkPolicy", ["webhookPorts", "keda"]),
    ({"networkPolicy": {"gatewayInternetEgress": ["inference-gateway"]}}, "networkPolicy.gatewayInternetEgress", ["namespace/name"]),
    ({"networkPolicy": {"gatewayInternetEgress": ["agentgateway-system/x"]}}, "networkPolicy", ["gatewayInternetEgress", "protectedNamespaces"]),
    ({"networkPolicy": {"benchmarkNamespace": "team-a"}}, "networkPolicy", ["benchmarkNamespace", "protectedNamespaces"]),
    ({"networkPolicy": {"platformServices": {"prometheusClients": ["Keda"]}}}, "networkPolicy.platformServices.prometheusClients", ["DNS-1123"]),
    ({"servingEgress": {"namespaces": ["serving"], "modelHubEgress": "internet-443", "modelHubClients": []}},
     "servingEgress", ["modelHubClients", "empty"]),
], ids=["protect-litellm", "webhook-unknown-ns", "gateway-not-ref", "gateway-unprotected", "bench-unprotected",
        "bad-prom-client", "hub-without-clients"])
def test_config_errors_name_the_key(extra, key, words):
    with pytest.raises(ConfigError) as info:
        parse(_raw(**extra))
    msg = str(info.value)
    assert f"`llm-platform:{key}`" in msg, msg
    for w in words:
        assert w in msg, msg


def test_service_namespaces_are_written_and_can_be_switched_off():
    names = {p["metadata"]["namespace"] for p in build_policies(NetworkPolicyConfig())}
    assert {"litellm", "monitoring"} <= names
    off = NetworkPolicyConfig(platform_services={"litellm": False, "monitoring": False})
    assert not {"litellm", "monitoring"} & {p["metadata"]["namespace"] for p in build_policies(off)}


def test_facts_match_the_reference_platform():
    from components.network_policy import LITELLM_MIGRATION_LABELS, PROMETHEUS_PORT
    from tests.reference_platform import reference_dir

    ref = reference_dir("serving")
    ps = NetworkPolicyConfig().platform_services
    values = yaml.safe_load((ref / "platform/litellm/values.yaml").read_text())
    assert values["db"]["endpoint"] == f"{ps.database_cluster}-rw", "LiteLLM's DB is the CNPG Cluster's -rw Service"
    assert values["migrationJob"]["enabled"] and LITELLM_MIGRATION_LABELS == {"batch.kubernetes.io/job-name": "litellm-migrations"}
    cnpg = yaml.safe_load((ref / "clusters/ai-dev/catalog/llm-gateway-core/cloudnative-pg.yaml").read_text())
    assert cnpg["spec"]["destination"]["namespace"] == ps.database_operator_namespace
    scaled = yaml.safe_load((ref / "serving/raw-vllm/scaledobject.yaml").read_text())
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["metadata"]["serverAddress"].endswith(f".monitoring.svc:{PROMETHEUS_PORT}"), trigger
    for f in ("benchmarks/job.yaml", "benchmarks/guidellm-job.yaml"):
        assert yaml.safe_load((ref / f).read_text())["metadata"]["namespace"] == NetworkPolicyConfig().benchmark_namespace
