"""The whole program (__main__.py) under Pulumi mocks, per stack: what is registered, how, in which order."""

import json

import pytest

from tools import mockrun

SECURITY_PREFIX = "llm-platform:security:"


@pytest.fixture(scope="module")
def stacks():
    return {stack: mockrun.run_stack(stack) for stack in ("dev", "prod")}


def of_type(records, typ):
    return [r for r in records if r.type == typ]


def one(records, typ, name=None):
    found = [r for r in of_type(records, typ) if name is None or r.name == name]
    assert len(found) == 1, f"expected one {typ} {name or ''}, got {[r.name for r in found]}"
    return found[0]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cluster_has_dataplane_v2_and_no_legacy_addon(stacks, stack):
    cluster = one(stacks[stack], "gcp:container/cluster:Cluster")
    assert cluster.inputs["datapathProvider"] == "ADVANCED_DATAPATH", f"{stack} cluster {cluster.name}: Dataplane V2"
    assert "networkPolicy" not in cluster.inputs, f"{stack} cluster: legacy network_policy must not be set"
    assert "networkPolicyConfig" not in cluster.inputs.get("addonsConfig", {}), f"{stack} cluster: no legacy addon"
    assert cluster.inputs["removeDefaultNodePool"] is True
    assert cluster.inputs["enableShieldedNodes"] is True


def test_prod_node_pools_as_configured(stacks):
    pools = {r.inputs["name"]: r.inputs for r in of_type(stacks["prod"], "gcp:container/nodePool:NodePool")}
    assert sorted(pools) == ["gpu-h100", "gpu-l4", "sandbox", "system"]
    h100 = pools["gpu-h100"]["nodeConfig"]["guestAccelerators"][0]
    assert h100["type"] == "nvidia-h100-80gb" and h100["count"] == 8
    assert h100["gpuDriverInstallationConfig"]["gpuDriverVersion"] == "LATEST"
    assert pools["sandbox"]["nodeConfig"]["sandboxConfig"]["type"] == "GVISOR"
    assert pools["gpu-l4"]["autoscaling"] == {"minNodeCount": 1, "maxNodeCount": 6}
    for name, pool in pools.items():
        assert pool["nodeConfig"]["workloadMetadataConfig"]["mode"] == "GKE_METADATA", f"pool {name}: Workload Identity metadata"


def test_private_cluster_opens_webhook_port_from_control_plane_only(stacks):
    fw = one(stacks["prod"], "gcp:compute/firewall:Firewall")
    assert fw.inputs["sourceRanges"] == ["172.16.0.32/28"], "webhook firewall: source must be the control-plane /28"
    assert fw.inputs["allows"] == [{"protocol": "tcp", "ports": ["9443"]}]
    tag = fw.inputs["targetTags"][0]
    for pool in of_type(stacks["prod"], "gcp:container/nodePool:NodePool"):
        assert tag in pool.inputs["nodeConfig"]["tags"], f"pool {pool.name} must carry the firewall's target tag"
    assert of_type(stacks["dev"], "gcp:compute/firewall:Firewall") == [], "dev has public nodes: no firewall rule"


def test_prod_cluster_is_protected(stacks):
    cluster = one(stacks["prod"], "gcp:container/cluster:Cluster")
    assert cluster.protect, "prod cluster must be protected (Pulumi refuses to replace or delete it)"
    assert cluster.inputs["deletionProtection"] is True
    for pool in of_type(stacks["prod"], "gcp:container/nodePool:NodePool"):
        assert pool.protect, f"prod node pool {pool.name} must be protected"


def test_allow_replacement_lifts_the_guard():
    cfg = json.loads(mockrun.stack_config("prod")["llm-platform:cluster"])
    cfg["allowReplacement"] = True
    records = mockrun.run_stack("prod", {"llm-platform:cluster": cfg})
    cluster = one(records, "gcp:container/cluster:Cluster")
    assert not cluster.protect, "allowReplacement: true must lift protect"
    assert cluster.inputs["deletionProtection"] is False, "allowReplacement: true must lift GKE deletion protection"


def test_dev_without_deletion_protection_is_not_protected(stacks):
    cluster = one(stacks["dev"], "gcp:container/cluster:Cluster")
    assert not cluster.protect and cluster.inputs["deletionProtection"] is False


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_kubernetes_resource_uses_the_one_provider(stacks, stack):
    records = stacks[stack]
    provider = one(records, "pulumi:providers:kubernetes")
    assert provider.inputs["enableServerSideApply"] == "true", "server-side apply must be explicitly on"
    k8s = [r for r in records if r.custom and r.type.startswith("kubernetes:")]
    assert k8s, "the stack must create Kubernetes resources"
    for r in k8s:
        assert r.provider.startswith(provider.urn + "::"), f"{r.type} {r.name} must use provider {provider.name}, got {r.provider}"


def test_existing_cluster_creates_no_gke_resources():
    records = mockrun.run_stack(
        "dev",
        {
            "llm-platform:cluster": None,
            "llm-platform:existingCluster": {
                "context": "platform-team",
                "kubeconfig": "/etc/platform/kubeconfig",
                "networkPolicyEnforced": True,
                "gkeSandbox": True,  # dev turns agent isolation on
            },
        },
    )
    assert [r for r in records if r.type.startswith("gcp:")] == [], "existingCluster: no GKE resources"
    provider = one(records, "pulumi:providers:kubernetes")
    assert provider.inputs["context"] == "platform-team"
    assert provider.inputs["kubeconfig"] == "/etc/platform/kubeconfig"
    cleanup = one(records, "command:local:Command").inputs["environment"]
    assert cleanup == {"KUBE_CONTEXT": "platform-team", "KUBECONFIG": "/etc/platform/kubeconfig"}, (
        "the destroy-time cleanup must reach the same existing cluster"
    )
    assert any(r.type.startswith(SECURITY_PREFIX) for r in records), "security still applies to an existing cluster"


def test_security_off_registers_nothing_of_the_group():
    records = mockrun.run_stack("prod", {"llm-platform:security": False})
    assert [r.type for r in records if r.type.startswith(SECURITY_PREFIX)] == []
    assert [r.type for r in records if r.custom and r.type.startswith("kubernetes:") and not r.type.startswith("pulumi:")] == []
    assert one(records, "gcp:container/cluster:Cluster").inputs["datapathProvider"] == "ADVANCED_DATAPATH"
