"""SR2 engine: namespace, CRDs, pinned release, cleanup guard and policy, in the right order."""

import filecmp
import json

import pytest

from components import kueue_policy, kyverno, policy_model, yaml_io
from tests.kyverno_chart import chart_dir, upstream_dir


@pytest.fixture(scope="module")
def prod(program_run):
    return program_run("prod")


@pytest.fixture(scope="module")
def dev(program_run):
    return program_run("dev")


def by_type(records, typ):
    return [r for r in records if r.type == typ]


def sr2(records):
    ns = [r for r in by_type(records, "kubernetes:core/v1:Namespace") if r.name == "kyverno"]
    crds = by_type(records, "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition")
    cleanup = [r for r in by_type(records, "command:local:Command") if r.name == "kyverno-webhook-cleanup"]
    release = by_type(records, "kubernetes:helm.sh/v3:Release")
    # SR2's own policies; the guardrail catalog's, agent isolation's and the tenant boundaries' have their own
    # components.
    policies = [p for p in by_type(records, "kubernetes:kyverno.io/v1:ClusterPolicy")
                if "llm-platform:security:Guardrails" not in p.parent
                and "llm-platform:security:WorkloadIsolation" not in p.parent
                and "llm-platform:security:TenantBoundaries" not in p.parent]
    return ns, crds, cleanup, release, policies


def test_all_parts_registered_once(prod):
    ns, crds, cleanup, release, policies = sr2(prod)
    assert len(ns) == 1, "kyverno namespace"
    assert len(crds) == 22, f"all 22 CRDs of Kyverno v1.18.1, got {len(crds)}"
    assert len(cleanup) == 1 and len(release) == 1
    assert [p.inputs["metadata"]["name"] for p in policies] == ["require-kueue-queue-name"]


def test_create_order_namespace_crds_cleanup_release_policies(prod):
    ns, crds, cleanup, release, policies = sr2(prod)
    ns_urn = ns[0].urn
    for crd in crds:
        assert ns_urn in crd.dependencies, f"CRD {crd.name} must wait for the kyverno namespace"
    crd_urns = {c.urn for c in crds}
    assert crd_urns <= set(cleanup[0].dependencies), "cleanup guard comes after the CRDs"
    rel = release[0]
    assert crd_urns <= set(rel.dependencies), "every CRD must be present before the controller starts"
    assert cleanup[0].urn in rel.dependencies, (
        "the release must depend on the cleanup guard, so destroy deletes the release first and the guard after"
    )
    assert ns_urn in rel.dependencies
    for p in policies:
        assert rel.urn in p.dependencies, f"policy {p.name} only after the admission controller is ready"


def test_kyverno_waits_for_node_pools_and_firewall(prod):
    ns = sr2(prod)[0][0]
    pools = {r.urn for r in by_type(prod, "gcp:container/nodePool:NodePool")}
    fw = {r.urn for r in by_type(prod, "gcp:compute/firewall:Firewall")}
    assert pools | fw <= set(ns.dependencies), "webhooks need nodes and TCP 9443 from the control plane first"


def test_release_is_pinned_and_crds_are_not_helm_managed(prod):
    rel = sr2(prod)[3][0].inputs
    assert (rel["chart"], rel["version"]) == ("kyverno", "3.8.1"), "chart pinned to 3.8.1"
    assert rel["repositoryOpts"]["repo"] == "https://kyverno.github.io/kyverno/", "official chart repository"
    assert rel["namespace"] == "kyverno" and rel["skipCrds"] is True
    assert rel["values"]["crds"]["install"] is False, "crds.install=false: the subcharts ignore --skip-crds"
    assert rel.get("skipAwait") is False, "helm --wait: ready before policies are registered"


def test_prod_values_are_highly_available(prod, dev):
    values = sr2(prod)[3][0].inputs["values"]["admissionController"]
    assert values["replicas"] == 3
    assert values["podDisruptionBudget"] == {"enabled": True, "minAvailable": 2}
    assert values["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert values["container"]["resources"]["requests"], "resource requests set"
    excluded = sr2(prod)[3][0].inputs["values"]["config"]["webhooks"]["namespaceSelector"]["matchExpressions"][0]
    assert excluded["operator"] == "NotIn" and set(excluded["values"]) == {"kube-system", "kyverno"}
    assert sr2(dev)[3][0].inputs["values"]["admissionController"]["replicas"] == 1


def _leaf_paths(value, prefix=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaf_paths(v, prefix + (k,))
    else:
        yield prefix


def test_namespace_admins_get_no_kyverno_policy_rights():
    """The chart's default (rbac.roles.aggregate.admin: true) aggregates writing Kyverno Policies and namespaced
    generating policies into `admin`; the background controller would then create a tenant's NetworkPolicy,
    exempt from restrict-network-policy-writes. The release turns it off and keeps read access."""
    upstream = yaml_io.load((chart_dir() / "values.yaml").read_text())
    assert upstream["rbac"]["roles"]["aggregate"]["admin"] is True, "the chart default this override exists for"
    values = kyverno.helm_values(kyverno.KyvernoConfig())
    assert values["rbac"]["roles"]["aggregate"] == {"admin": False, "view": True}


@pytest.mark.parametrize("replicas", [1, 3])
def test_every_values_key_exists_in_the_chart(replicas):
    upstream = yaml_io.load((chart_dir() / "values.yaml").read_text())
    values = kyverno.helm_values(kyverno.KyvernoConfig(admission_replicas=replicas))
    for path in _leaf_paths(values):
        node = upstream
        for i, key in enumerate(path):
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, dict) and node == {} or node is None or isinstance(node, list):
                break  # free-form value in the chart (e.g. resources: {}, topologySpreadConstraints: [])
            else:
                pytest.fail(f"values key {'.'.join(path[: i + 1])} does not exist in chart 3.8.1 values.yaml")


def test_chart_metadata_matches_pin():
    chart = yaml_io.load((chart_dir() / "Chart.yaml").read_text())
    assert chart["version"] == kyverno.CHART_VERSION
    assert chart["appVersion"] == "v1.18.1"
    conditions = {d["name"]: d.get("condition") for d in chart["dependencies"]}
    assert conditions["crds"] == conditions["kyverno-api"] == "crds.install", "crds.install switches both CRD subcharts"


def test_vendored_crds_are_upstream_bytes():
    upstream = upstream_dir() / "crds"
    names = sorted(p.name for p in upstream.glob("*.yaml"))
    assert names == sorted(p.name for p in kyverno.CRD_DIR.glob("*.yaml")), "same 22 CRD files"
    for name in names:
        assert filecmp.cmp(upstream / name, kyverno.CRD_DIR / name, shallow=False), f"vendored CRD {name} differs from upstream"


@pytest.mark.parametrize("name", ["values.yaml", "Chart.yaml"])
def test_vendored_chart_files_are_upstream_bytes(name):
    vendored = kyverno.CRD_DIR.parent / name
    assert vendored.is_file(), f"vendor/kyverno/3.8.1/{name} is missing"
    assert filecmp.cmp(upstream_dir() / name, vendored, shallow=False), f"vendored chart file {name} differs from upstream"


def test_two_crds_exceed_the_client_side_apply_annotation_limit(prod):
    sizes = {c["metadata"]["name"]: len(json.dumps(c, separators=(",", ":"))) for c in kyverno.crd_manifests()}
    too_big = sorted(n for n, s in sizes.items() if s > 262144)
    assert too_big == ["clusterpolicies.kyverno.io", "policies.kyverno.io"], too_big
    provider = by_type(prod, "pulumi:providers:kubernetes")[0]
    assert provider.inputs["enableServerSideApply"] == "true", "only server-side apply can store them"


def test_cleanup_guard_removes_every_kyverno_webhook_configuration(prod):
    cmd = sr2(prod)[2][0].inputs
    assert "validatingwebhookconfigurations" in cmd["delete"] and "mutatingwebhookconfigurations" in cmd["delete"]
    assert "-l webhook.kyverno.io/managed-by=kyverno" in cmd["delete"]
    assert "KUBECONFIG_CONTENT" in cmd["environment"], "the guard needs the cluster's kubeconfig at destroy time"
    assert "kubectl" in cmd["create"], "create checks kubectl is there before it is needed at destroy time"


@pytest.mark.parametrize("stack,action", [("dev", "Audit"), ("prod", "Enforce")])
def test_failure_action_per_stack(stack, action, prod, dev):
    policy = sr2({"dev": dev, "prod": prod}[stack])[4][0].inputs
    actions = {policy["spec"].get("validationFailureAction")} | {
        r.get("validate", {}).get("failureAction") for r in policy["spec"]["rules"]
    }
    actions.discard(None)
    assert actions == {action}, f"{stack}: require-kueue-queue-name must {action}, got {actions}"


def test_rendered_policy_matches_the_policy_file_but_for_the_action(prod):
    rendered = sr2(prod)[4][0].inputs
    source = policy_model.load_policy(kueue_policy.POLICY_NAME)
    assert rendered["spec"]["rules"] == kyverno.with_failure_action(source, "Enforce")["spec"]["rules"]
    assert rendered["metadata"]["annotations"] == {**source["metadata"]["annotations"], **kyverno.POLICY_READY_ANNOTATIONS}


def test_stack_policy_webhook_is_scoped_by_label_not_tenant_names(prod, dev):
    """SR2 scope is the namespace label (issue 21, finding 5): the webhook names no tenant, only keeps the
    platform's own namespaces and requests without accelerators off Kyverno's path."""
    for records in (prod, dev):
        spec = sr2(records)[4][0].inputs["spec"]
        conditions = {c["name"]: c["expression"] for c in spec["webhookConfiguration"]["matchConditions"]}
        assert set(conditions) == {"not-platform-namespace", "accelerator-request"}, conditions
        assert "team-a" not in conditions["not-platform-namespace"], conditions
        expected = kueue_policy.render_policy(kyverno.KyvernoConfig())["spec"]["webhookConfiguration"]
        assert spec["webhookConfiguration"] == expected


def test_tenants_are_labelled(prod, dev):
    adopting = {r.urn for r in prod + dev if r.type == "pulumi:providers:kubernetes" and r.inputs.get("upsertExistingObjects") == "true"}
    for stack, records, tenants in (("prod", prod, ["team-a", "team-b", "team-c"]), ("dev", dev, ["team-a"])):
        created = [r for r in by_type(records, "kubernetes:core/v1:Namespace") if r.name.startswith("tenant-")]
        assert sorted(c.inputs["metadata"]["name"] for c in created) == tenants, f"{stack} creates or adopts its tenants"
        for c in created:
            labels = c.inputs["metadata"]["labels"]
            owned = {k: v for k, v in labels.items() if not k.startswith("pod-security.kubernetes.io/")}
            assert owned == {"llm-platform/kueue-managed": "true"}, f"tenant {c.name}: Kueue label and Pod Security only"
            assert labels.get("pod-security.kubernetes.io/enforce") in ("baseline", "restricted"), \
                f"tenant {c.name}: Pod Security enforce label"
            assert c.retain_on_delete, f"{stack} tenant {c.name}: never deleted with the stack"
            assert c.provider.rsplit("::", 1)[0] in adopting, f"{stack} tenant {c.name}: adopted when it already exists"


def _run_script(script, tmp_path, env):
    """Run a guard script with a stub kubectl on PATH that records its arguments and kubeconfig."""
    import subprocess

    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "kubectl.log"
    stub = bindir / "kubectl"
    stub.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'while [ $# -gt 0 ]; do [ "$1" = --kubeconfig ] && cat "$2" >> ' + str(log) + '; shift; done\n'
    )
    stub.chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": f"{bindir}:/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=30,
    )
    return result, (log.read_text() if log.exists() else "")


def test_cleanup_script_deletes_kyverno_webhooks_with_the_stack_kubeconfig(tmp_path):
    result, log = _run_script(kyverno.CLEANUP_SCRIPT, tmp_path, {"KUBECONFIG_CONTENT": "apiVersion: v1\nkind: Config\n"})
    assert result.returncode == 0, result.stderr
    assert "delete validatingwebhookconfigurations,mutatingwebhookconfigurations" in log
    assert "-l webhook.kyverno.io/managed-by=kyverno --ignore-not-found" in log
    assert "kind: Config" in log, "kubectl must be given the stack's kubeconfig"


def test_cleanup_script_uses_the_context_of_an_existing_cluster(tmp_path):
    result, log = _run_script(kyverno.CLEANUP_SCRIPT, tmp_path, {"KUBE_CONTEXT": "platform-team"})
    assert result.returncode == 0, result.stderr
    assert "--context platform-team" in log and "--kubeconfig" not in log


def test_cleanup_preflight_fails_clearly_without_kubectl(tmp_path):
    import subprocess

    result = subprocess.run(["/bin/sh", "-c", kyverno.CLEANUP_PREFLIGHT], env={"PATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "kubectl is required" in result.stderr


def test_crd_json_cache_is_the_vendored_yaml():
    """The render loads vendor/kyverno/3.8.1/crds.json (fast); it must be exactly the vendored YAML, parsed."""
    assert kyverno.CRD_CACHE.is_file(), "crds.json missing: run kyverno.write_crd_cache()"
    cached = list(kyverno.crd_manifests())
    parsed = list(kyverno.crd_manifests_from_yaml())
    assert [c["metadata"]["name"] for c in cached] == [c["metadata"]["name"] for c in parsed], "same CRDs, same order"
    stale = [p["metadata"]["name"] for c, p in zip(cached, parsed, strict=True) if c != p]
    assert stale == [], f"crds.json is stale for {stale}: regenerate with kyverno.write_crd_cache()"


def test_both_kubernetes_providers_name_the_cluster(prod):
    # With clusterIdentifier, a kubeconfig change (dns <-> ip access, a new CA or endpoint) updates the
    # providers instead of replacing them and every object they manage.
    providers = by_type(prod, "pulumi:providers:kubernetes")
    assert len(providers) == 2, [p.name for p in providers]
    ids = {p.inputs.get("clusterIdentifier") for p in providers}
    assert ids == {"gke/llm-platform-prod/europe-west4/llm-prod"}, ids
