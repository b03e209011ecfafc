"""The whole program (__main__.py) under Pulumi mocks, per stack: what is registered, how, in which order."""

import json

import pytest

from tools import mockrun

SECURITY_PREFIX = "llm-platform:security:"


@pytest.fixture(scope="module")
def stacks(program_run):
    return {stack: program_run(stack) for stack in ("dev", "prod")}


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


def providers(records):
    """(strict provider, adopting provider) of a stack."""
    found = of_type(records, "pulumi:providers:kubernetes")
    strict = [p for p in found if p.inputs.get("upsertExistingObjects") == "false"]
    adopting = [p for p in found if p.inputs.get("upsertExistingObjects") == "true"]
    assert len(strict) == 1 and len(adopting) == 1 and len(found) == 2, f"one strict + one adopting provider, got {[p.name for p in found]}"
    return strict[0], adopting[0]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_kubernetes_resource_uses_the_one_provider(stacks, stack):
    records = stacks[stack]
    provider, adopting = providers(records)
    for p in (provider, adopting):
        assert p.inputs["enableServerSideApply"] == "true", f"{p.name}: server-side apply must be explicitly on"
        assert p.inputs["kubeconfig"] == provider.inputs["kubeconfig"], f"{p.name}: same cluster"
    k8s = [r for r in records if r.custom and r.type.startswith("kubernetes:")]
    assert k8s, "the stack must create Kubernetes resources"
    for r in k8s:
        if r.provider.startswith(adopting.urn + "::"):
            assert r.type == "kubernetes:core/v1:Namespace" and r.retain_on_delete, (
                f"{r.type} {r.name}: only retained namespaces may be adopted (upsert), never other objects"
            )
            continue
        assert r.provider.startswith(provider.urn + "::"), f"{r.type} {r.name} must use provider {provider.name}, got {r.provider}"


def test_existing_cluster_creates_no_gke_resources(program_run):
    records = program_run(
        "dev",
        overrides={
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
    provider, adopting = providers(records)
    for p in (provider, adopting):
        assert p.inputs["context"] == "platform-team"
        assert p.inputs["kubeconfig"] == "/etc/platform/kubeconfig"
    cleanup = one(records, "command:local:Command", "kyverno-webhook-cleanup").inputs["environment"]
    assert cleanup == {"KUBE_CONTEXT": "platform-team", "KUBECONFIG": "/etc/platform/kubeconfig"}, (
        "the destroy-time cleanup must reach the same existing cluster"
    )
    assert any(r.type.startswith(SECURITY_PREFIX) for r in records), "security still applies to an existing cluster"


def test_security_off_registers_nothing_of_the_group():
    records = mockrun.run_stack("prod", {"llm-platform:security": False})
    assert [r.type for r in records if r.type.startswith(SECURITY_PREFIX)] == []
    assert [r.type for r in records if r.custom and r.type.startswith("kubernetes:") and not r.type.startswith("pulumi:")] == []
    assert one(records, "gcp:container/cluster:Cluster").inputs["datapathProvider"] == "ADVANCED_DATAPATH"


def test_without_a_node_service_account_the_stack_creates_a_least_privilege_one():
    """The fallback for a stack run by a project owner; the CI stacks name the one ci/identities creates."""
    stack = "dev"
    cfg = json.loads(mockrun.stack_config(stack)["llm-platform:cluster"])
    del cfg["nodeServiceAccount"]
    records = mockrun.run_stack(stack, {"llm-platform:cluster": cfg})
    account = one(records, "gcp:serviceaccount/account:Account")
    members = of_type(records, "gcp:projects/iAMMember:IAMMember")
    assert [m.inputs["role"] for m in members] == ["roles/container.defaultNodeServiceAccount"], (
        f"{stack} node service account: GKE's least-privilege node role only"
    )
    assert all(m.inputs["member"] == "serviceAccount:llm-nodes@project.iam.gserviceaccount.com" for m in members)
    for pool in of_type(records, "gcp:container/nodePool:NodePool"):
        assert pool.inputs["nodeConfig"]["serviceAccount"] == "llm-nodes@project.iam.gserviceaccount.com", (
            f"{stack} pool {pool.name}: must not run as the default Compute Engine service account"
        )
        assert {account.urn, *(m.urn for m in members)} <= set(pool.dependencies), (
            f"{stack} pool {pool.name}: nodes boot after their identity has its roles"
        )
    cluster = one(records, "gcp:container/cluster:Cluster")
    assert cluster.inputs["nodeConfig"]["serviceAccount"] == "llm-dev-nodes@llm-platform-dev.iam.gserviceaccount.com"
    assert {account.urn, *(m.urn for m in members)} <= set(cluster.dependencies), "the temporary default pool runs as it"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_given_node_service_account_is_used_and_nothing_is_created(stacks, stack):
    """Both stacks name the account ci/identities creates: the deployer then needs no IAM admin role."""
    cfg = json.loads(mockrun.stack_config(stack)["llm-platform:cluster"])
    assert cfg["nodeServiceAccount"].endswith(f"@llm-platform-{stack}.iam.gserviceaccount.com")
    records = stacks[stack]
    assert of_type(records, "gcp:serviceaccount/account:Account") == [] and of_type(records, "gcp:projects/iAMMember:IAMMember") == []
    for pool in of_type(records, "gcp:container/nodePool:NodePool"):
        assert pool.inputs["nodeConfig"]["serviceAccount"] == cfg["nodeServiceAccount"], f"pool {pool.name}"


def test_a3_pools_get_gvnic_and_no_other_pool_changes(stacks):
    """GKE Standard turns gVNIC on only when asked (docs/deploy.md "gVNIC on A3 pools")."""
    for stack in ("dev", "prod"):
        for pool in of_type(stacks[stack], "gcp:container/nodePool:NodePool"):
            gvnic = pool.inputs["nodeConfig"].get("gvnic")
            if pool.inputs["nodeConfig"]["machineType"].startswith("a3-"):
                assert gvnic == {"enabled": True}, f"{stack} pool {pool.name}: A3 needs gVNIC"
            else:
                assert gvnic is None, f"{stack} pool {pool.name}: no gVNIC change (it would recreate the nodes)"
    assert any(p.inputs["nodeConfig"]["machineType"].startswith("a3-") for p in of_type(stacks["prod"], "gcp:container/nodePool:NodePool"))


def test_regional_gpu_pools_have_their_own_zones(stacks):
    pools = {r.inputs["name"]: r.inputs for r in of_type(stacks["prod"], "gcp:container/nodePool:NodePool")}
    assert pools["gpu-h100"]["nodeLocations"] == ["europe-west4-b", "europe-west4-c"]
    assert pools["gpu-l4"]["nodeLocations"] == ["europe-west4-a", "europe-west4-b", "europe-west4-c"]
    assert "nodeLocations" not in pools["system"], "pools without nodeLocations use the cluster's zones"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_control_plane_reachable_through_the_dns_endpoint(stacks, stack):
    cluster = one(stacks[stack], "gcp:container/cluster:Cluster")
    dns = cluster.inputs["controlPlaneEndpointsConfig"]["dnsEndpointConfig"]
    assert dns["allowExternalTraffic"] is True, f"{stack}: DNS endpoint open to IAM-authorised callers (CI)"
    provider = next(p for p in of_type(stacks[stack], "pulumi:providers:kubernetes"))
    assert ".gke.goog" in provider.inputs["kubeconfig"], f"{stack}: the provider reaches the API server by DNS"


def test_ip_access_keeps_the_authorized_networks_and_no_dns_endpoint():
    cfg = json.loads(mockrun.stack_config("prod")["llm-platform:cluster"])
    cfg["controlPlaneAccess"] = "ip"
    records = mockrun.run_stack("prod", {"llm-platform:cluster": cfg})
    cluster = one(records, "gcp:container/cluster:Cluster")
    assert "controlPlaneEndpointsConfig" not in cluster.inputs
    assert len(cluster.inputs["masterAuthorizedNetworksConfig"]["cidrBlocks"]) == 2
    provider = next(p for p in of_type(records, "pulumi:providers:kubernetes"))
    assert "server: https://203.0.113.10" in provider.inputs["kubeconfig"]
