"""GkeCluster under Pulumi mocks, in the style of pulumi/examples testing-unit-py.

Mocks are set before the component module is imported; each test returns
Output.all(...).apply(check) so Pulumi waits for the values.
"""

import pulumi
import pytest

from tools import mockrun

mockrun.install()


@pytest.fixture(autouse=True)
def cluster_mocks():
    """Other modules' program runs install their own engine: set the shared mocks again before each test."""
    mockrun.install()


CLUSTER_OUT = mockrun.MOCK_OUTPUTS["gcp:container/cluster:Cluster"]
CA = CLUSTER_OUT["masterAuth"]["clusterCaCertificate"]
DNS_ENDPOINT = CLUSTER_OUT["controlPlaneEndpointsConfig"]["dnsEndpointConfig"]["endpoint"]

from components.cluster import GkeCluster, GkeClusterArgs, replacement_guard  # noqa: E402
from components.config import ClusterConfig  # noqa: E402

PROD_LIKE = ClusterConfig.model_validate(
    {
        "name": "unit",
        "location": "europe-west4",
        "privateNodes": True,
        "controlPlaneCidr": "172.16.0.32/28",
        "nodePools": [
            {"name": "system"},
            {
                "name": "gpu",
                "machineType": "g2-standard-8",
                "nodeLocations": ["europe-west4-a"],
                "gpu": {"type": "nvidia-l4", "count": 2},
            },
            {"name": "sandbox", "sandbox": True},
        ],
    }
)


@pulumi.runtime.test
def test_cluster_uses_dataplane_v2_and_no_legacy_network_policy():
    gke = GkeCluster("unit", GkeClusterArgs(config=PROD_LIKE, project="proj-1"))

    def check(args):
        datapath, addons, network_policy, wi = args
        assert datapath == "ADVANCED_DATAPATH", f"cluster unit: Dataplane V2 required, got {datapath}"
        assert not (addons or {}).get("network_policy_config"), "cluster unit: legacy network_policy addon must not be set"
        assert network_policy is None, "cluster unit: legacy network_policy must not be set (GKE rejects it with Dataplane V2)"
        assert wi["workload_pool"] == "proj-1.svc.id.goog", f"cluster unit: Workload Identity pool, got {wi}"

    return pulumi.Output.all(
        gke.cluster.datapath_provider,
        gke.cluster.addons_config,
        gke.cluster.network_policy,
        gke.cluster.workload_identity_config,
    ).apply(check)


@pulumi.runtime.test
def test_node_pools_follow_config():
    gke = GkeCluster("pools", GkeClusterArgs(config=PROD_LIKE, project="proj-1"))

    def check(args):
        names, configs = args[0], args[1]
        assert names == ["system", "gpu", "sandbox"], f"node pools: expected the configured pools, got {names}"
        system, gpu, sandbox = configs
        assert not system.get("guest_accelerators"), "pool system: no GPUs expected"
        acc = gpu["guest_accelerators"][0]
        assert (acc["type"], acc["count"]) == ("nvidia-l4", 2), f"pool gpu: accelerators {acc}"
        assert acc["gpu_driver_installation_config"]["gpu_driver_version"] == "DEFAULT"
        assert sandbox["sandbox_config"]["type"] == "GVISOR", "pool sandbox: gVisor expected"
        assert sandbox["image_type"] == "COS_CONTAINERD", "pool sandbox: gVisor needs COS_CONTAINERD"

    return pulumi.Output.all(
        pulumi.Output.all(*[p.name for p in gke.node_pools]),
        pulumi.Output.all(*[p.node_config for p in gke.node_pools]),
    ).apply(check)


@pulumi.runtime.test
def test_kubeconfig_uses_gke_auth_plugin():
    # controlPlaneAccess: ip -- the IP endpoint with the cluster's CA.
    ip = PROD_LIKE.model_copy(update={"control_plane_access": "ip"})
    gke = GkeCluster("kc", GkeClusterArgs(config=ip, project="proj-1"))

    def check(text):
        assert "command: gke-gcloud-auth-plugin" in text, "kubeconfig must authenticate with gke-gcloud-auth-plugin"
        assert f"server: https://{CLUSTER_OUT['endpoint']}" in text
        assert f"certificate-authority-data: {CA}" in text, "the IP endpoint is verified against the cluster CA"
        assert "token:" not in text and "password:" not in text, "kubeconfig must hold no static credentials"

    return gke.kubeconfig.apply(check)


@pulumi.runtime.test
def test_kubeconfig_uses_the_dns_endpoint_by_default():
    gke = GkeCluster("kcdns", GkeClusterArgs(config=PROD_LIKE, project="proj-1"))

    def check(args):
        text, endpoints = args
        assert endpoints["dns_endpoint_config"]["allow_external_traffic"] is True, (
            "cluster kcdns: the DNS endpoint must accept traffic from outside the VPC (CI runners)"
        )
        assert f"server: https://{DNS_ENDPOINT}" in text, "kubeconfig must use the DNS endpoint"
        assert "certificate-authority-data" not in text, "the DNS endpoint has a publicly trusted certificate"
        assert "command: gke-gcloud-auth-plugin" in text, "IAM authenticates (gke-gcloud-auth-plugin)"

    return pulumi.Output.all(gke.kubeconfig, gke.cluster.control_plane_endpoints_config).apply(check)


def test_replacement_guard():
    assert replacement_guard(PROD_LIKE) is True, "deletion protection on, replacement not allowed -> protect"
    lifted = PROD_LIKE.model_copy(update={"allow_replacement": True})
    assert replacement_guard(lifted) is False, "allowReplacement: true lifts the guard"
    unprotected = PROD_LIKE.model_copy(update={"deletion_protection": False})
    assert replacement_guard(unprotected) is False


@pytest.mark.parametrize("cidr", ["8.8.8.0/28", "172.16.0.32/27", "172.16.0.33/28"])
def test_control_plane_cidr_must_be_a_private_28(cidr):
    # A public or mis-sized control-plane range is refused before anything is registered.
    with pytest.raises(ValueError, match="controlPlaneCidr|private /28|IPv4 CIDR"):
        ClusterConfig.model_validate({"name": "unit", "location": "europe-west4", "privateNodes": True,
                                      "controlPlaneCidr": cidr, "nodePools": [{"name": "system"}]})


@pulumi.runtime.test
def test_every_node_pool_has_secure_boot_and_integrity_monitoring():
    gke = GkeCluster("unit", GkeClusterArgs(config=PROD_LIKE, project="proj-1"))

    def check(configs):
        assert len(configs) == len(PROD_LIKE.node_pools)
        for cfg in configs:
            shielded = cfg["shielded_instance_config"]
            assert shielded["enable_secure_boot"] is True, shielded
            assert shielded["enable_integrity_monitoring"] is True, shielded

    return pulumi.Output.all(*[p.node_config for p in gke.node_pools]).apply(check)
