"""The real deployment path: the strict API-server model (tools/apiserver.py) and preview mode.

Both stacks must pass the strict model as a first `pulumi up` on a brand-new cluster, in up and
in preview mode; for each fixed item a test replays the old behaviour and shows the model (or the
config validation, or the preflight) refuses it.
"""

import copy
import dataclasses
import json
import os
import subprocess

import pytest

from components import config, kyverno
from components.namespaces import declared_existing_namespaces, written_namespaces
from tools import apiserver, mockrun

STACKS = ["dev", "prod"]
EXISTING = {
    "context": "platform-team",
    "kubeconfig": "/etc/platform/kubeconfig",
    "networkPolicyEnforced": True,
    "gkeSandbox": True,  # dev turns agent isolation on, which needs GKE Sandbox
}


@pytest.fixture(scope="module")
def runs(program_run):
    """{(stack, preview): records}."""
    return {(s, p): program_run(s, preview=p) for s in STACKS for p in (False, True)}


def settings(stack, overrides=None):
    return config.parse(mockrun.stack_config(stack, overrides), stack)


def strict(records, stack, overrides=None, cluster=None, **kw):
    s = settings(stack, overrides)
    return apiserver.check(
        records,
        cluster or apiserver.Cluster(),
        declared_existing_namespaces(s),
        creates_cluster=s.cluster is not None,
        **kw,
    )


def rules(refusals):
    return {r.rule for r in refusals}


def of_type(records, typ):
    return [r for r in records if r.type == typ]


def named(records, name, typ=None):
    found = [r for r in records if r.name == name and (typ is None or r.type == typ)]
    assert len(found) == 1, f"expected one resource {name}, got {len(found)}"
    return found[0]


def replace(records, old, new):
    return [new if r is old else r for r in records]


# ---------------------------------------------------------------- both stacks pass, both modes


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
@pytest.mark.parametrize("stack", STACKS)
def test_stack_passes_the_strict_model_on_a_new_cluster(runs, stack, preview):
    refusals = strict(runs[(stack, preview)], stack)
    assert refusals == [], f"{stack} ({'preview' if preview else 'up'}) refused:\n" + "\n".join(map(str, refusals))


@pytest.mark.parametrize("stack", STACKS)
def test_preview_registers_exactly_what_up_registers(runs, stack):
    up = [(r.type, r.urn) for r in runs[(stack, False)]]
    preview = [(r.type, r.urn) for r in runs[(stack, True)]]
    assert sorted(preview) == sorted(up), (
        f"{stack}: a preview of a new stack must register the same resources as the up "
        "(nothing may be created inside an apply on an output unknown at preview)"
    )


# What may be unknown in a preview of a new stack: computed cloud values only, never an input the
# Kubernetes provider or the strict model needs to identify an object.
ALLOWED_UNKNOWN = {
    ("pulumi:providers:kubernetes", "kubeconfig"),
    ("command:local:Command", "environment.KUBECONFIG_CONTENT"),
    ("gcp:container/nodePool:NodePool", "cluster"),
    ("gcp:container/nodePool:NodePool", "nodeConfig.serviceAccount"),
    ("gcp:projects/iAMMember:IAMMember", "member"),
}
# The one Kubernetes input that may be unknown on a brand-new stack: the egress-locked serving profile's
# API-server rule on a public cluster, whose destination is the cluster's endpoint address (known only once
# the cluster exists; pulumi-kubernetes then previews the policy as computed instead of dry-running it).
ALLOWED_UNKNOWN_K8S = {("kubernetes:networking.k8s.io/v1:NetworkPolicy", "spec", "-allow-api-server-egress-")}


def _allowed_unknown_k8s(r, path: str) -> bool:
    return any(r.type == t and path == p and part in r.name for t, p, part in ALLOWED_UNKNOWN_K8S)


@pytest.mark.parametrize("stack", STACKS)
def test_preview_reads_nothing_it_needs_from_an_unknown_output(runs, stack):
    records = runs[(stack, True)]
    seen = set()
    for r in records:
        for path in mockrun.unknown_paths(r.inputs):
            if _allowed_unknown_k8s(r, path):
                continue
            assert (r.type, path) in ALLOWED_UNKNOWN, f"{r.type} {r.name}: input {path} is unknown at preview"
            seen.add((r.type, path))
        if r.is_kubernetes_object or r.type.startswith("kubernetes:helm.sh/"):
            unknown = [p for p in mockrun.unknown_paths(r.inputs) if not _allowed_unknown_k8s(r, p)]
            assert unknown == [], f"{r.type} {r.name}: every input must be known at preview, unknown: {unknown}"
    # The run is a real preview: the provider's kubeconfig (from the cluster's outputs) is unknown.
    assert ("pulumi:providers:kubernetes", "kubeconfig") in seen, f"{stack}: preview mode did not leave outputs unknown"


def test_dns_endpoint_is_unknown_not_empty_in_preview(monkeypatch):
    # The preview of a new cluster knows the input half of controlPlaneEndpointsConfig but not the
    # endpoint: the kubeconfig must then be unknown (the preview run above covers that; it was a
    # KeyError before); outside a preview a missing endpoint is an error, never an empty server.
    import pulumi

    from components.cluster import dns_endpoint

    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: False)
    with pytest.raises(ValueError, match="no DNS endpoint"):
        dns_endpoint({"dns_endpoint_config": {"allow_external_traffic": True}})
    assert dns_endpoint({"dns_endpoint_config": {"endpoint": "gke-x.europe-west4.gke.goog"}}) == "gke-x.europe-west4.gke.goog"


# ---------------------------------------------------------------- item 2: namespaces owned


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_owns_the_namespaces_it_writes_into(runs, stack):
    records = runs[(stack, False)]
    names = written_namespaces(settings(stack))
    cfg = settings(stack)
    expected = sorted({*cfg.network_policy.written_namespace_names, *cfg.agent_isolation.written_namespace_names})
    assert names == expected, f"{stack}: the stack owns every SR1-protected and agent namespace, got {names}"
    assert {"serving", "inference", "kserve", "llm-d"} <= set(names), f"{stack}: every model-serving namespace"
    for ns in names:
        r = named(records, f"ns-{ns}")
        assert r.retain_on_delete, f"namespace {ns}: retainOnDelete (removing the stack never deletes workloads)"
    for pol in of_type(records, "kubernetes:networking.k8s.io/v1:NetworkPolicy"):
        ns = pol.inputs["metadata"]["namespace"]
        assert named(records, f"ns-{ns}").urn in pol.dependencies, f"NetworkPolicy {pol.name} must depend on namespace {ns}"


def test_old_behaviour_policies_into_namespaces_nobody_created_is_refused(runs):
    # Before: no Namespace objects for the protected namespaces, the policies depended on nothing.
    records = runs[("prod", False)]
    ns_urns = {r.urn for r in records if r.type == "kubernetes:core/v1:Namespace" and r.name.startswith("ns-")}
    assert len(ns_urns) == len(written_namespaces(settings("prod"))), "one Namespace per protected namespace"
    old = [
        dataclasses.replace(r, dependencies=[d for d in r.dependencies if d not in ns_urns])
        for r in records
        if r.urn not in ns_urns
    ]
    refusals = [x for x in strict(old, "prod") if x.rule == "namespace"]
    refused = {x.resource for x in refusals}
    for pol in of_type(records, "kubernetes:networking.k8s.io/v1:NetworkPolicy"):
        assert f"{pol.type} {pol.name}" in refused, f"old behaviour: NetworkPolicy {pol.name} must be refused (namespace)"


def test_namespace_created_but_not_depended_on_is_refused(runs):
    # Registered earlier is not enough: the engine creates independent resources in parallel.
    records = runs[("dev", False)]
    pol = next(r for r in of_type(records, "kubernetes:networking.k8s.io/v1:NetworkPolicy"))
    ns_urn = named(records, f"ns-{pol.inputs['metadata']['namespace']}").urn
    cut = dataclasses.replace(pol, dependencies=[d for d in pol.dependencies if d != ns_urn])
    refusals = strict(replace(records, pol, cut), "dev")
    assert [x.resource for x in refusals if x.rule == "namespace"] == [f"{pol.type} {pol.name}"], refusals


# ---------------------------------------------------------------- item 3: adopt vs refuse


def test_existing_tenant_and_platform_namespaces_are_adopted(runs):
    # A cluster where serving, inference and team-a already exist (e.g. an operator made them).
    cluster = apiserver.Cluster(namespaces={*apiserver.Cluster().namespaces, "serving", "inference", "team-a"})
    assert strict(runs[("dev", False)], "dev", cluster=cluster) == []


def test_old_behaviour_create_of_an_existing_tenant_namespace_is_refused(runs):
    # Before: createTenantNamespaces created the namespace through the strict provider.
    records = runs[("dev", False)]
    strict_provider = next(
        r for r in of_type(records, "pulumi:providers:kubernetes") if r.inputs.get("upsertExistingObjects") == "false"
    )
    tenant = named(records, "tenant-team-a")
    old = dataclasses.replace(tenant, provider=f"{strict_provider.urn}::{strict_provider.name}-id")
    cluster = apiserver.Cluster(namespaces={*apiserver.Cluster().namespaces, "team-a"})
    refusals = strict(replace(records, tenant, old), "dev", cluster=cluster)
    assert [x.rule for x in refusals] == ["exists"] and "team-a" in refusals[0].message, refusals


def test_existing_cluster_patches_declared_tenants(program_run):
    # A missing tenant is not refused by the model: the real engine refuses it at the read before each patch
    # (make e2e, declared-tenants; test_declared_tenants_are_read_before_they_are_patched).
    overrides = {"llm-platform:cluster": None, "llm-platform:existingCluster": EXISTING, "llm-platform:kyverno": {}}
    records = program_run("prod", overrides=overrides)
    # Registration order follows dependency resolution, not config order: compare as a set.
    assert sorted(r.inputs["metadata"]["name"] for r in of_type(records, "kubernetes:core/v1:NamespacePatch")) == [
        "team-a",
        "team-b",
        "team-c",
    ]
    present = apiserver.Cluster(namespaces={*apiserver.Cluster().namespaces, "team-a", "team-b", "team-c"})
    assert strict(records, "prod", overrides, cluster=present) == []


def test_declared_tenants_are_read_before_they_are_patched(program_run):
    # The server-side apply patch of a missing namespace creates it (make e2e, apiserver-parity): each patch
    # depends on a read of its namespace, which fails the preview and the up when it is missing.
    from components.tenants import existence_check_name

    overrides = {"llm-platform:cluster": None, "llm-platform:existingCluster": EXISTING, "llm-platform:kyverno": {}}
    records = program_run("prod", overrides=overrides)
    created = {r.urn for r in records}
    patches = of_type(records, "kubernetes:core/v1:NamespacePatch")
    assert patches
    for patch in patches:
        read = f"$kubernetes:core/v1:Namespace::{existence_check_name(patch.inputs['metadata']['name'])}"
        reads = [d for d in patch.dependencies if d.endswith(read)]
        assert reads, f"{patch.name}: no dependency on the read {read}: {patch.dependencies}"
        assert not set(reads) & created, f"{patch.name}: the namespace it depends on is created, not read"


@pytest.mark.parametrize("create_missing", [False, True], ids=["declared-existing", "create"])
def test_the_read_is_of_the_declared_namespace(create_missing):
    import pulumi

    from components.tenants import TenantNamespaces, TenantNamespacesArgs, existence_check_name

    mocks = mockrun.install()
    reads = []
    new_resource = mocks.new_resource

    def recording(args):
        if args.resource_id:  # a read (`get`) carries the id of what it reads; a registration none
            reads.append((args.typ, args.name, args.resource_id))
        return new_resource(args)

    mocks.new_resource = recording

    @pulumi.runtime.test
    def run():
        tn = TenantNamespaces("t", TenantNamespacesArgs(tenants=["team-a", "team-b"], create_missing=create_missing))
        return pulumi.Output.all(*[ns.urn for ns in tn.namespaces])

    run()
    want = [] if create_missing else [("kubernetes:core/v1:Namespace", existence_check_name(t), t) for t in ("team-a", "team-b")]
    assert sorted(reads) == want


def test_cluster_already_running_kyverno_is_refused(runs, program_run):
    overrides = {"llm-platform:cluster": None, "llm-platform:existingCluster": EXISTING}
    records = program_run("dev", overrides=overrides)
    foreign = apiserver.Cluster(
        namespaces={*apiserver.Cluster().namespaces, "kyverno"},
        objects={apiserver.Key("apiextensions.k8s.io", "CustomResourceDefinition", "", "clusterpolicies.kyverno.io")},
    )
    refusals = strict(records, "dev", overrides, cluster=foreign)
    messages = "\n".join(map(str, refusals))
    assert "Namespace kyverno already exists" in messages and "clusterpolicies.kyverno.io already exists" in messages
    # ...and a real up stops before touching anything, with a message: the preflight runs first.
    preflight = named(records, "kyverno-preflight")
    assert preflight.urn in named(records, "kyverno", "kubernetes:core/v1:Namespace").dependencies, "the kyverno namespace waits for the preflight"


def _fake_kubectl(tmp_path, namespace, crd):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    stub = bindir / "kubectl"
    stub.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  *"get namespace kyverno -l app.kubernetes.io/managed-by=llm-platform"*) [ "$FAKE_NS" = ours ] && echo namespace/kyverno ;;\n'
        '  *"get namespace kyverno"*) [ "$FAKE_NS" != none ] && echo namespace/kyverno ;;\n'
        '  *"get customresourcedefinitions clusterpolicies.kyverno.io"*) [ "$FAKE_CRD" = 1 ] && echo crd/clusterpolicies.kyverno.io ;;\n'
        "esac\nexit 0\n"
    )
    stub.chmod(0o755)
    return subprocess.run(
        ["/bin/sh", "-c", kyverno.FOREIGN_KYVERNO_PREFLIGHT],
        env={"PATH": f"{bindir}:/usr/bin:/bin", "FAKE_NS": namespace, "FAKE_CRD": crd, "KUBECONFIG_CONTENT": "kind: Config\n"},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "namespace,crd,refused",
    [("none", "0", False), ("ours", "1", False), ("foreign", "0", True), ("none", "1", True), ("foreign", "1", True)],
)
def test_preflight_refuses_another_kyverno_with_a_message(tmp_path, namespace, crd, refused):
    result = _fake_kubectl(tmp_path, namespace, crd)
    if refused:
        assert result.returncode == 1, f"kyverno namespace={namespace} crd={crd}: must refuse"
        assert "refusing:" in result.stderr and "security false" in result.stderr, result.stderr
    else:
        assert result.returncode == 0, f"kyverno namespace={namespace} crd={crd}: must pass: {result.stderr}"


# ---------------------------------------------------------------- item 5: egress for private nodes


def test_private_nodes_get_cloud_nat_before_the_release(runs):
    records = runs[("prod", False)]
    nat = of_type(records, "gcp:compute/routerNat:RouterNat")
    assert len(nat) == 1 and nat[0].inputs["region"] == "europe-west4", "prod: one Cloud NAT in the cluster's region"
    assert nat[0].inputs["sourceSubnetworkIpRangesToNat"] == "LIST_OF_SUBNETWORKS"
    assert nat[0].inputs["subnetworks"][0]["name"] == "llm-prod-gke", "NAT for the cluster's subnetwork only"
    assert of_type(runs[("dev", False)], "gcp:compute/routerNat:RouterNat") == [], "dev has public nodes: no NAT"


def test_old_behaviour_private_nodes_without_nat_is_refused():
    cfg = json.loads(mockrun.stack_config("prod")["llm-platform:cluster"])
    overrides = {"llm-platform:cluster": {**cfg, "cloudNat": False}}
    records = mockrun.run_stack("prod", overrides)
    refusals = strict(records, "prod", overrides)
    assert [x.rule for x in refusals] == ["egress"], refusals
    # With egress the stack does not create (an existing NAT), the user says so explicitly.
    assert strict(records, "prod", overrides, private_egress_declared=True) == []


# ---------------------------------------------------------------- item 7: wait for Ready


def test_cluster_policy_waits_for_ready(runs):
    for stack in STACKS:
        for pol in of_type(runs[(stack, False)], "kubernetes:kyverno.io/v1:ClusterPolicy"):
            ann = pol.inputs["metadata"]["annotations"]
            assert ann["pulumi.com/waitFor"] == "condition=Ready", f"{stack} {pol.name}: up must wait for Ready"
            assert int(ann["pulumi.com/timeoutSeconds"]) > 0, f"{stack} {pol.name}: and fail after a timeout"


def test_old_behaviour_policy_without_readiness_wait_is_refused(runs):
    records = runs[("prod", False)]
    pol = of_type(records, "kubernetes:kyverno.io/v1:ClusterPolicy")[0]
    meta = copy.deepcopy(pol.inputs["metadata"])
    for k in kyverno.POLICY_READY_ANNOTATIONS:
        meta["annotations"].pop(k)
    refusals = strict(replace(records, pol, dataclasses.replace(pol, inputs={**pol.inputs, "metadata": meta})), "prod")
    assert [x.rule for x in refusals] == ["ready"], refusals


def test_kyverno_crd_has_the_ready_condition_the_wait_reads():
    crd = next(c for c in kyverno.crd_manifests() if c["metadata"]["name"] == "clusterpolicies.kyverno.io")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert "conditions" in status, "ClusterPolicy v1 status has conditions (Kyverno sets type Ready)"
    assert version.get("subresources", {}).get("status") == {}, "status is a subresource Kyverno writes"


@pytest.mark.parametrize("broken", ["no-crd-dependency", "no-engine-dependency"])
def test_policy_before_its_crd_or_engine_is_refused(runs, broken):
    records = runs[("prod", False)]
    pol = of_type(records, "kubernetes:kyverno.io/v1:ClusterPolicy")[0]
    # The policy reaches the CRDs and the engine only through the release.
    release = of_type(records, "kubernetes:helm.sh/v3:Release")[0]
    crd = next(r for r in records if r.name == "clusterpolicies.kyverno.io")
    if broken == "no-crd-dependency":
        cut = dataclasses.replace(release, dependencies=[d for d in release.dependencies if d != crd.urn])
        records = replace(records, release, cut)
        cleanup = named(records, "kyverno-webhook-cleanup")
        records = replace(records, cleanup, dataclasses.replace(cleanup, dependencies=[d for d in cleanup.dependencies if d != crd.urn]))
        expected = "crd"
    else:
        records = replace(records, pol, dataclasses.replace(pol, dependencies=[]))
        expected = "engine"
    assert expected in rules(strict(records, "prod")), f"{broken}: must be refused ({expected})"


def test_network_policy_before_the_enforcing_cluster_is_refused(runs):
    records = runs[("prod", False)]
    pol = of_type(records, "kubernetes:networking.k8s.io/v1:NetworkPolicy")[0]
    # Simulate a provider that does not wait for the cluster: drop all cloud dependencies.
    provider_urn = pol.provider.rsplit("::", 1)[0]
    prov = next(r for r in records if r.urn == provider_urn)
    ns = named(records, f"ns-{pol.inputs['metadata']['namespace']}")
    adopting = next(r for r in records if r.urn == ns.provider.rsplit("::", 1)[0])
    cut = replace(records, prov, dataclasses.replace(prov, dependencies=[]))
    cut = replace(cut, adopting, dataclasses.replace(adopting, dependencies=[]))
    cut = replace(cut, ns, dataclasses.replace(ns, dependencies=[]))
    assert "engine" in rules(strict(cut, "prod"))


# ---------------------------------------------------------------- item 8: kubeconfig path


def test_kubeconfig_path_is_expanded_and_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KCDIR", "/srv/kube")
    raw = {"llm-platform:existingCluster": json.dumps({**EXISTING, "kubeconfig": "~/.kube/platform.yaml"})}
    assert config.parse(raw).existing_cluster.kubeconfig == f"{tmp_path}/.kube/platform.yaml"
    raw = {"llm-platform:existingCluster": json.dumps({**EXISTING, "kubeconfig": "$KCDIR/config"})}
    assert config.parse(raw).existing_cluster.kubeconfig == "/srv/kube/config"
    raw = {"llm-platform:existingCluster": json.dumps({**EXISTING, "kubeconfig": "kube/config"})}
    assert config.parse(raw).existing_cluster.kubeconfig == os.path.join(os.getcwd(), "kube/config")
    raw = {"llm-platform:existingCluster": json.dumps({**EXISTING, "kubeconfig": "$NOPE_UNSET_VAR/config"})}
    with pytest.raises(config.ConfigError, match=r"existingCluster.kubeconfig`: .*does not expand"):
        config.parse(raw)


def test_cleanup_gets_the_expanded_path_and_the_old_one_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    overrides = {"llm-platform:cluster": None, "llm-platform:existingCluster": {**EXISTING, "kubeconfig": "~/.kube/platform.yaml"}}
    records = mockrun.run_stack("dev", overrides)
    cleanup = named(records, "kyverno-webhook-cleanup")
    assert cleanup.inputs["environment"]["KUBECONFIG"] == f"{tmp_path}/.kube/platform.yaml"
    assert strict(records, "dev", overrides) == []
    old = dataclasses.replace(cleanup, inputs={**cleanup.inputs, "environment": {**cleanup.inputs["environment"], "KUBECONFIG": "~/.kube/platform.yaml"}})
    refusals = strict(replace(records, cleanup, old), "dev", overrides)
    assert [x.rule for x in refusals] == ["path"], refusals


# ---------------------------------------------------------------- model self-checks


def test_model_refuses_two_creates_of_the_same_object(runs):
    records = runs[("dev", False)]
    ns = named(records, "kyverno", "kubernetes:core/v1:Namespace")
    dup = dataclasses.replace(ns, name="kyverno-again", urn=ns.urn + "-again")
    refusals = strict(records + [dup], "dev")
    assert [x.rule for x in refusals] == ["exists"] and "also created by" in refusals[0].message, refusals


# ---------------------------------------------------------------- item 4: CI reaches the API server


def ci_reach_problem(cluster_cfg, runs_on):
    """Why a workflow on `runs_on` could not reach the stack's API server (None: it can)."""
    if cluster_cfg.control_plane_access == "dns":
        return None  # DNS endpoint: reachable from anywhere, authorised by IAM (container.clusters.connect)
    if not cluster_cfg.authorized_networks:
        return None  # public IP endpoint without a restriction list
    if runs_on.startswith("ubuntu-") or runs_on.startswith("windows-") or runs_on.startswith("macos-"):
        return (
            f"IP endpoint limited to {[n.cidr for n in cluster_cfg.authorized_networks]}, but GitHub-hosted "
            f"runners ({runs_on}) have no fixed address: use controlPlaneAccess: dns or self-hosted runners"
        )
    return None


def _deploy_runners():
    from components import yaml_io

    workflow = yaml_io.load((mockrun.ROOT / ".github" / "workflows" / "deploy.yaml").read_text())
    return {job.get("environment"): job["runs-on"] for job in workflow["jobs"].values() if job.get("environment")}


@pytest.mark.parametrize("stack", STACKS)
def test_ci_can_reach_every_stack_api_server(stack):
    runs_on = _deploy_runners()[stack]
    problem = ci_reach_problem(settings(stack).cluster, runs_on)
    assert problem is None, f"deploy job of {stack}: {problem}"


def test_old_behaviour_ip_endpoint_behind_fixed_ranges_is_refused_for_hosted_runners():
    cfg = json.loads(mockrun.stack_config("prod")["llm-platform:cluster"])
    old = settings("prod", {"llm-platform:cluster": {**cfg, "controlPlaneAccess": "ip"}}).cluster
    problem = ci_reach_problem(old, _deploy_runners()["prod"])
    assert problem and "GitHub-hosted" in problem, "prod's old IP endpoint behind two fixed ranges must be refused"


def test_preflight_recognises_the_namespace_this_stack_creates(runs):
    # A re-run (the command's inputs changed) must pass on our own install: the label it looks for
    # is the one the kyverno namespace carries.
    key, value = kyverno.OWNED_LABEL.split("=")
    ns = named(runs[("prod", False)], "kyverno", "kubernetes:core/v1:Namespace")
    assert ns.inputs["metadata"]["labels"][key] == value, "kyverno namespace must carry the preflight's owner label"
    assert f"-l {kyverno.OWNED_LABEL}" in kyverno.FOREIGN_KYVERNO_PREFLIGHT
