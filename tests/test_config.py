"""Typed stack config: valid stacks parse; every bad input gives one error naming the key."""

import json

import pytest
from pydantic import ValidationError

from components.config import ConfigError, parse
from tools import mockrun

CLUSTER = {"name": "c1", "location": "europe-west4-a", "nodePools": [{"name": "system"}]}


def raw(**keys):
    """Raw Pulumi config as the engine passes it: `llm-platform:<key>` -> JSON text."""
    out = {"gcp:project": "proj-1", "llm-platform:cluster": json.dumps(CLUSTER)}
    for key, value in keys.items():
        full = key if ":" in key else f"llm-platform:{key}"
        if value is None:
            out.pop(full, None)
        else:
            out[full] = value if isinstance(value, str) else json.dumps(value)
    return out


def cluster(**changes):
    return {**CLUSTER, **changes}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_are_valid(stack):
    cfg = parse(mockrun.stack_config(stack), stack)
    assert cfg.cluster is not None, f"Pulumi.{stack}.yaml must create a cluster"
    assert cfg.security is True, f"Pulumi.{stack}.yaml turns the security group on"


def test_defaults_are_safe():
    cfg = parse(raw())
    assert cfg.security is False, "security must default to off"
    assert cfg.tenants == []
    assert cfg.cluster.deletion_protection is True, "deletion protection must default to on"
    assert cfg.cluster.allow_replacement is False, "replacement must be refused by default"
    assert cfg.kyverno.failure_action == "Enforce"


def test_deployment_path_defaults():
    c = parse(raw()).cluster
    assert c.control_plane_access == "dns", "default: DNS endpoint with IAM (CI reaches the API server)"
    assert c.nat is False and c.node_service_account is None and c.node_pools[0].node_locations == []
    private = parse(raw(cluster=cluster(privateNodes=True, controlPlaneCidr="172.16.0.32/28"))).cluster
    assert private.nat is True, "private nodes get Cloud NAT by default (image pulls)"
    assert parse(raw(cluster=cluster(privateNodes=True, controlPlaneCidr="172.16.0.32/28", cloudNat=False))).cluster.nat is False


def test_dev_is_zonal_and_prod_regional_private_with_gpu():
    dev = parse(mockrun.stack_config("dev"), "dev").cluster
    prod = parse(mockrun.stack_config("prod"), "prod").cluster
    assert not dev.regional and dev.location == "europe-west4-a"
    assert prod.regional and prod.private_nodes and prod.control_plane_cidr
    assert any(p.gpu for p in prod.node_pools), "prod needs a GPU pool"
    assert parse(mockrun.stack_config("dev"), "dev").kyverno.failure_action == "Audit"
    assert parse(mockrun.stack_config("prod"), "prod").kyverno.failure_action == "Enforce"


BAD = [
    # (id, raw config, key the error must name, words the fix must contain)
    ("typo-top-level-key", raw(securty=True), "llm-platform:securty", "unknown key"),
    ("typo-nested-key", raw(cluster=cluster(nodePool=[{"name": "x"}])), "cluster.nodePool", "unknown key"),
    ("wrong-type-security", raw(security="maybe"), "llm-platform:security", "boolean"),
    ("wrong-type-min-nodes", raw(cluster=cluster(nodePools=[{"name": "s", "minNodes": "two"}])), "nodePools[0].minNodes", "integer"),
    ("bad-cidr", raw(cluster=cluster(privateNodes=True, controlPlaneCidr="172.16.0.300/28")), "controlPlaneCidr", "CIDR"),
    ("cidr-not-28", raw(cluster=cluster(privateNodes=True, controlPlaneCidr="172.16.0.0/24")), "controlPlaneCidr", "/28"),
    ("private-without-cidr", raw(cluster=cluster(privateNodes=True)), "llm-platform:cluster", "controlPlaneCidr"),
    ("bad-authorized-network", raw(cluster=cluster(authorizedNetworks=[{"cidr": "10.0.0.1/8"}])), "authorizedNetworks[0].cidr", "CIDR"),
    ("gpu-without-count", raw(cluster=cluster(nodePools=[{"name": "g", "gpu": {"type": "nvidia-l4"}}])), "nodePools[0].gpu.count", "missing"),
    ("only-sandbox-pool", raw(cluster=cluster(nodePools=[{"name": "sb", "sandbox": True}])), "llm-platform:cluster", "at least one pool without"),
    ("both-cluster-and-existing", raw(existingCluster={"context": "x", "networkPolicyEnforced": True}), "llm-platform", "exactly one"),
    ("neither-cluster-nor-existing", raw(cluster=None), "llm-platform", "exactly one"),
    ("existing-without-enforcement-flag", raw(cluster=None, existingCluster={"context": "x"}), "existingCluster.networkPolicyEnforced", "missing"),
    ("security-on-unenforced-cluster", raw(cluster=None, security=True, existingCluster={"context": "x", "networkPolicyEnforced": False}), "llm-platform", "authored but not enforced"),
    ("malformed-location", raw(cluster=cluster(location="europe_west4")), "cluster.location", "region"),
    ("bad-tenant-name", raw(tenants=["Team_A"]), "llm-platform:tenants", "DNS-1123"),
    ("duplicate-tenant", raw(tenants=["team-a", "team-a"]), "llm-platform:tenants", "listed twice"),
    ("duplicate-pool-names", raw(cluster=cluster(nodePools=[{"name": "a"}, {"name": "a"}])), "llm-platform:cluster", "listed twice"),
    ("min-above-max", raw(cluster=cluster(nodePools=[{"name": "a", "minNodes": 5, "maxNodes": 2}])), "nodePools[0]", "minNodes"),
    ("cluster-name-too-long", raw(cluster=cluster(name="c" * 41)), "cluster.name", "at most 40"),
    ("missing-gcp-project", raw(**{"gcp:project": None}), "llm-platform", "gcp:project"),
    ("bad-failure-action", raw(kyverno={"failureAction": "Warn"}), "kyverno.failureAction", "Enforce"),
    ("regional-gpu-pool-without-zones", raw(cluster=cluster(location="europe-west4", nodePools=[{"name": "s"}, {"name": "g", "gpu": {"type": "nvidia-l4", "count": 1}}])), "llm-platform:cluster", "set nodeLocations"),
    ("node-zone-outside-region", raw(cluster=cluster(nodePools=[{"name": "s", "nodeLocations": ["us-central1-a"]}])), "llm-platform:cluster", "not in the cluster's region"),
    ("node-location-not-a-zone", raw(cluster=cluster(nodePools=[{"name": "s", "nodeLocations": ["europe-west4"]}])), "nodePools[0].nodeLocations", "not a zone"),
    ("bad-control-plane-access", raw(cluster=cluster(controlPlaneAccess="public")), "cluster.controlPlaneAccess", "'dns' or 'ip'"),
    ("bad-node-service-account", raw(cluster=cluster(nodeServiceAccount="nodes")), "llm-platform:cluster", "service account email"),
    ("tenants-to-label-on-a-new-cluster", raw(security=True, tenants=["team-a"]), "llm-platform", "createTenantNamespaces: true"),
    ("kubeconfig-unset-variable", raw(cluster=None, existingCluster={"context": "x", "networkPolicyEnforced": True, "kubeconfig": "$LLM_PLATFORM_UNSET_VAR/k"}), "existingCluster.kubeconfig", "absolute path"),
]


@pytest.mark.parametrize("config,key,fix", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_gives_one_clear_error(config, key, fix):
    with pytest.raises(ConfigError) as exc:
        parse(config, "dev")
    message = str(exc.value)
    assert message.startswith("invalid config in Pulumi.dev.yaml: `"), message
    assert key in message, f"error must name the key {key!r}: {message}"
    assert fix.lower() in message.lower(), f"error must say {fix!r}: {message}"
    assert "\n" not in message, f"one error, one line: {message}"


@pytest.mark.parametrize("config,key,fix", [b[1:] for b in BAD[:6]], ids=[b[0] for b in BAD[:6]])
def test_program_registers_nothing_on_bad_config(config, key, fix):
    """The program turns the error into a RunError before any resource is registered."""
    import pulumi

    monitor_records = []
    with pytest.raises(pulumi.RunError) as exc:
        monitor_records = mockrun.run("dev", config)
    assert key in str(exc.value)
    assert monitor_records == []
    assert mockrun.last_records() == [], "no resource may be registered before the config is valid"


# ------------------------------------------- SR2: accelerators, trusted controllers, reserved tenants

BAD_SR2 = [
    ("tenant-named-like-operator-namespace", raw(tenants=["team-a", "kuberay-system"]), "tenants[1]", "operator namespace"),
    ("tenant-named-kueue-system", raw(tenants=["kueue-system"]), "llm-platform:tenants", "platform namespace"),
    ("tenant-named-jobset-system", raw(tenants=["jobset-system"]), "tenants[0]", "operator namespace"),
    ("tenant-named-lws-system", raw(tenants=["lws-system"]), "tenants[0]", "operator namespace"),
    ("tenant-named-like-configured-operator-namespace",
     raw(tenants=["ml-ops"], kyverno={"trustedControllers": {"kuberay": "system:serviceaccount:ml-ops:kuberay"}}),
     "tenants[0]", "reserved: "),
    ("trusted-controller-not-a-service-account",
     raw(kyverno={"trustedControllers": {"jobset": "jobset-controller"}}), "kyverno.trustedControllers.jobset",
     "system:serviceaccount:<namespace>"),
    ("unknown-trusted-controller", raw(kyverno={"trustedControllers": {"argo": "system:serviceaccount:a:b"}}),
     "kyverno.trustedControllers.argo", "unknown key"),
    ("empty-accelerator-list", raw(kyverno={"acceleratorResources": []}), "kyverno.acceleratorResources", "at least one"),
    ("bad-accelerator-name", raw(kyverno={"acceleratorResources": ["gpu"]}), "kyverno.acceleratorResources", "nvidia.com/gpu"),
    ("duplicate-accelerator", raw(kyverno={"acceleratorResources": ["google.com/tpu", "google.com/tpu"]}),
     "kyverno.acceleratorResources", "listed twice"),
]


@pytest.mark.parametrize("config,key,fix", [b[1:] for b in BAD_SR2], ids=[b[0] for b in BAD_SR2])
def test_bad_sr2_config_gives_one_clear_error(config, key, fix):
    test_bad_config_gives_one_clear_error(config, key, fix)


def test_sr2_defaults_cover_gke_accelerators_and_upstream_controllers():
    k = parse(raw()).kyverno
    assert k.accelerator_resources == ["nvidia.com/gpu", "google.com/tpu"]
    assert k.trusted_controllers.kueue == "system:serviceaccount:kueue-system:kueue-controller-manager"
    assert k.resource_claims_through_kueue is False, "DRA claims are denied unless Kueue counts them"
    assert {"kuberay-system", "jobset-system", "lws-system", "kueue-system"} <= k.trusted_controllers.namespaces()
    custom = parse(raw(kyverno={"acceleratorResources": ["nvidia.com/gpu"],
                                "trustedControllers": {"lws": "system:serviceaccount:lws:lws"}})).kyverno
    assert custom.accelerator_resources == ["nvidia.com/gpu"]
    assert custom.trusted_controllers.lws == "system:serviceaccount:lws:lws"
    assert custom.trusted_controllers.jobset.endswith("jobset-system:jobset-controller-manager"), "others keep defaults"


@pytest.mark.parametrize("values", [[""], ["-bad"], ["a" * 64]])
def test_in_namespace_client_label_values_must_be_non_empty_label_values(values):
    # A second, looser regex once shadowed this one and let '' through.
    from components.config import InNamespaceClient
    with pytest.raises(ValidationError, match="is not a label value"):
        InNamespaceClient(name="bench", label="app.kubernetes.io/name", values=values)


@pytest.mark.parametrize("where", ["allowedFrom", "protectedNamespaces"])
def test_a_tenant_listed_as_trusted_or_protected_is_refused(where):
    # A tenant in allowedFrom would reach every protected namespace directly, bypassing LiteLLM.
    with pytest.raises(ConfigError, match="tenant 'team-a' is also listed in networkPolicy"):
        parse(raw(security=True, tenants=["team-a"], networkPolicy={where: ["inference", "team-a"]}))
