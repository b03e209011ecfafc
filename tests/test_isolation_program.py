"""The three workload-isolation capabilities in the whole program (under Pulumi mocks).

* Off (config defaults, or explicitly off) they register nothing and change nothing: the dev and
  prod programs with the features off are identical, resource by resource and input by input, to the
  programs whose stack files do not mention them.
* On (Pulumi.dev.yaml) they register the agent ClusterPolicy after the Kyverno release, the
  NetworkPolicies, the NetworkLogging patch and the cluster's Dataplane V2 observability config.
"""

from __future__ import annotations

import copy
import json

import pytest

from components import observability, yaml_io
from components.config import NetworkPolicyLoggingConfig
from tools import mockrun

ISSUE12_KEYS = ("llm-platform:agentIsolation", "llm-platform:servingEgress", "llm-platform:networkPolicyLogging",
                "llm-platform:clusterDns")
CLUSTER_KEYS = ("datapathObservability", "fqdnNetworkPolicy")


def _stack(stack: str) -> dict:
    return (yaml_io.load((mockrun.ROOT / f"Pulumi.{stack}.yaml").read_text()) or {})["config"]


def _without(cfg: dict) -> dict:
    cfg = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in ISSUE12_KEYS}
    for k in CLUSTER_KEYS:
        cfg["llm-platform:cluster"].pop(k, None)
    return cfg


def _explicitly_off(cfg: dict) -> dict:
    cfg = _without(cfg)
    cfg["llm-platform:agentIsolation"] = {"enabled": False, "namespaces": []}
    cfg["llm-platform:servingEgress"] = {"namespaces": [], "modelHubEgress": "internet-443"}
    cfg["llm-platform:networkPolicyLogging"] = {"denied": False, "allowed": False}
    # The guardrail catalog's egress lockdown opens clusterDns's paths too: off is the defaults, spelled out.
    cfg["llm-platform:clusterDns"] = {"nodeLocalDnsCache": False, "cloudDns": False}
    cfg["llm-platform:cluster"].update({"datapathObservability": {"metrics": False, "relay": False},
                                        "fqdnNetworkPolicy": False})
    return cfg


def _engine_config(cfg: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()}


def _run(stack: str, cfg: dict) -> list[mockrun.Registration]:
    return mockrun.run(stack, _engine_config(cfg))


def _fingerprint(records):
    return sorted(
        json.dumps([r.type, r.name, r.inputs, r.parent, r.dependencies, r.protect, r.retain_on_delete], sort_keys=True)
        for r in records
    )


@pytest.fixture(scope="module")
def dev_on(program_run):
    return program_run("dev")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_features_off_leave_the_program_unchanged(stack, program_run):
    # prod sets none of the keys: its plain run is the session's, which other modules read too
    absent = program_run(stack, config=_engine_config(_without(_stack(stack))))
    off = _run(stack, _explicitly_off(_stack(stack)))
    assert len(absent) > 30, f"{stack}: the program registered too little to compare ({len(absent)})"
    a, b = _fingerprint(absent), _fingerprint(off)
    extra = sorted(set(b) - set(a))[:3]
    missing = sorted(set(a) - set(b))[:3]
    assert a == b, f"{stack}: features explicitly off must register exactly what the plain stack does; extra {extra}, missing {missing}"
    types = {r.type for r in off}
    assert "llm-platform:security:WorkloadIsolation" not in types
    assert "llm-platform:observability:NetworkPolicyLogging" not in types
    cluster = next(r for r in off if r.type == "gcp:container/cluster:Cluster")
    assert "monitoringConfig" not in cluster.inputs and "enableFqdnNetworkPolicy" not in cluster.inputs, (
        f"{stack} cluster: no observability/FQDN inputs when off"
    )


def test_prod_keeps_all_three_off():
    cfg = _stack("prod")
    assert not any(k in cfg for k in ISSUE12_KEYS), "Pulumi.prod.yaml: the capabilities stay off (defaults)"
    assert _without(cfg) == cfg


def test_dev_registers_agent_isolation_after_kyverno(dev_on):
    policy = next(r for r in dev_on if r.type == "kubernetes:kyverno.io/v1:ClusterPolicy" and r.name == "cluster-agent-runtime-isolation")
    release = next(r for r in dev_on if r.type == "kubernetes:helm.sh/v3:Release")
    assert release.urn in policy.dependencies, "agent-runtime-isolation must wait for the Kyverno release"
    assert policy.inputs["spec"]["validationFailureAction"] == "Audit", "dev: Kyverno failure action Audit"
    for rule in policy.inputs["spec"]["rules"]:
        assert rule["match"]["any"][0]["resources"]["namespaces"] == ["agents"], rule["name"]
    parent = next(r for r in dev_on if r.type == "llm-platform:security:WorkloadIsolation")
    assert policy.parent == parent.urn
    names = {r.inputs["metadata"]["namespace"] + "/" + r.inputs["metadata"]["name"]
             for r in dev_on if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"}
    assert {"agents/agent-default-deny", "agents/agent-allow-dns", "agents/agent-allow-model-gateway",
            "agents/agent-allow-telemetry", "serving/default-deny-egress", "serving/allow-model-hub-egress-model-server"} <= names


def test_dev_enables_observability(dev_on):
    cluster = next(r for r in dev_on if r.type == "gcp:container/cluster:Cluster")
    assert cluster.inputs["monitoringConfig"] == {
        "advancedDatapathObservabilityConfig": {"enableMetrics": True, "enableRelay": True}
    }, cluster.inputs.get("monitoringConfig")
    patch = next(r for r in dev_on if r.type == "kubernetes:networking.gke.io/v1alpha1:NetworkLoggingPatch")
    assert patch.inputs["metadata"]["name"] == "default", "NetworkLogging is the cluster singleton `default`"
    assert "namespace" not in patch.inputs["metadata"], "NetworkLogging is cluster-scoped"
    assert patch.inputs["spec"]["cluster"]["deny"] == {"log": True, "delegate": False}
    assert patch.inputs["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"
    pools = {r.inputs["name"]: r.inputs for r in dev_on if r.type == "gcp:container/nodePool:NodePool"}
    assert pools["sandbox"]["nodeConfig"]["sandboxConfig"]["type"] == "GVISOR", "dev: a GKE Sandbox pool for the agents"


def test_network_logging_manifest():
    assert observability.network_logging_manifest(NetworkPolicyLoggingConfig()) is None
    m = observability.network_logging_manifest(NetworkPolicyLoggingConfig(denied=True, allowed=True))
    assert (m["apiVersion"], m["kind"], m["metadata"]["name"]) == ("networking.gke.io/v1alpha1", "NetworkLogging", "default")
    assert m["spec"]["cluster"]["allow"]["log"] is True and m["spec"]["cluster"]["deny"]["log"] is True


def test_dev_render_objects_are_valid(dev_on):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = 0
    for r in dev_on:
        if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy":
            obj = mockrun_normalise(r.inputs)
            try:
                kubernetes_validate.validate(obj, "1.33.0", strict=True)
            except kubernetes_validate.ValidationError as e:  # pragma: no cover - failure path
                pytest.fail(f"{r.name}: not a valid NetworkPolicy: {e.message}")
            checked += 1
    assert checked >= 13 + 4 + 5


def mockrun_normalise(value):
    from tools.render import _normalise

    return _normalise(value)


def test_dev_api_server_egress_uses_the_cluster_endpoint(dev_on):
    # dev is a public cluster without apiServerCidrs: the endpoint the cluster reports (mocked as
    # 203.0.113.10) becomes the pickers' / KServe controller's API server destination.
    pols = {r.inputs["metadata"]["name"]: r for r in dev_on
            if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy" and r.inputs["metadata"]["namespace"] == "serving"}
    for client in ("endpoint-picker", "kserve-controller"):
        p = pols[f"allow-api-server-egress-{client}"]
        assert p.inputs["spec"]["egress"] == [
            {"to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}
        ], p.inputs["spec"]
        assert p.inputs["spec"]["podSelector"]["matchExpressions"], "only the labelled clients"


def test_endpoint_cidr():
    from components.workload_isolation import endpoint_cidr

    assert endpoint_cidr("34.90.1.2") == "34.90.1.2/32"
    with pytest.raises(ValueError, match="apiServerCidrs"):
        endpoint_cidr("gke-1234.europe-west4.gke.goog")
