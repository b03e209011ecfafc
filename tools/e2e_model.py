"""`make e2e E2E_ARGS="--only strict-model"`: tools/apiserver.py (the strict API-server model behind `make synth`)
against the real API server and the real provider, rule by rule.

One small Pulumi stack (`e2e-model`) registers, through the same provider helper as the program, one resource
per case a rule decides; the same registrations are replayed through ``apiserver.check`` with the same cluster
state. For each case the model's verdict (refused by which rule, or allowed) is compared with what the real
`pulumi up` did (an error on that resource, or created). The model's scope tables (``CLUSTER_SCOPED``,
``BUILTIN_GROUPS``, the `Cluster*` guess for CRDs the stack does not create) are compared with discovery.
Rules that need GKE, Kyverno's pods or kubectl (`engine`, `egress`, `ready`, `path`) are listed as not checkable here.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from tools.mockrun import Registration

PREFIX = "e2e-model-"
EXISTING = f"{PREFIX}existing"
ADOPTED = f"{PREFIX}adopted"
HELM_NS = f"{PREFIX}helm"
MISSING = f"{PREFIX}missing"
NOWHERE = f"{PREFIX}nowhere"
NEW = f"{PREFIX}new"
PROJECT = "llm-platform"
STACK = "e2e-model"
NOT_CHECKABLE = {
    "engine": "needs Kyverno's pods (a policy's Ready) or a Dataplane V2 cluster",
    "egress": "needs GKE private nodes and Cloud NAT",
    "ready": "needs Kyverno's pods to make a policy Ready",
    "path": "needs kubectl and the pulumi-command provider",
    "unknown": "see first-deploy-plan (an unknown kubeconfig, not an unknown object identity)",
}


# Why the real provider may differ, per case (shown with a disagreement).
EXPLAIN = {
    "ns-existing-strict": "the provider here is 4.25.0, which always upserts under server-side apply (pkg/await/await.go: "
                          "'we always send a PATCH request during creates with SSA enabled') and has no upsertExistingObjects "
                          "option; the model follows 4.34's AlreadyExists (pulumi/pulumi-kubernetes#4278), not runnable here",
    "patch-missing": "the server-side apply patch creates the namespace: what the model's message says happens (an object "
                     "nobody owns), but the up does not fail",
}


@dataclass
class Case:
    resource: str
    """Pulumi resource name in the e2e-model stack."""
    type: str
    inputs: dict[str, Any]
    provider: str
    """strict | adopting"""
    what: str


def write_chart(dest: pathlib.Path) -> pathlib.Path:
    """A one-ConfigMap chart: the smallest Helm release."""
    chart = dest / "e2e-model"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": "e2e-model", "version": "0.1.0"}))
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  a: b\n")
    return chart


def cases(chart: str) -> list[Case]:
    def ns(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}

    def release(name: str, namespace: str) -> dict[str, Any]:
        return {"chart": chart, "name": name, "namespace": namespace, "createNamespace": False, "skipAwait": True}

    return [
        Case("ns-new", "kubernetes:core/v1:Namespace", ns(NEW), "strict", "create of a namespace that does not exist"),
        Case("ns-existing-strict", "kubernetes:core/v1:Namespace", ns(EXISTING), "strict",
             "create of an existing namespace, provider without upsertExistingObjects"),
        Case("ns-existing-adopting", "kubernetes:core/v1:Namespace", ns(ADOPTED), "adopting",
             "create of an existing namespace, provider with upsertExistingObjects"),
        Case("patch-missing", "kubernetes:core/v1:NamespacePatch",
             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MISSING, "labels": {"a": "b"}}}, "strict",
             "NamespacePatch of a namespace that does not exist"),
        Case("netpol-missing-namespace", "kubernetes:networking.k8s.io/v1:NetworkPolicy",
             {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": NOWHERE},
              "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}, "strict", "NetworkPolicy in a namespace nobody creates"),
        Case("custom-resource-no-crd", "kubernetes:example.com/v1:Widget",
             {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}}, "strict",
             "custom resource whose CRD does not exist"),
        Case("release-a", "kubernetes:helm.sh/v3:Release", release(f"{PREFIX}rel", HELM_NS), "strict", "Helm release"),
        Case("release-b", "kubernetes:helm.sh/v3:Release", release(f"{PREFIX}rel", HELM_NS), "strict",
             "a second Helm release of the same name and namespace"),
        Case("release-missing-namespace", "kubernetes:helm.sh/v3:Release", release(f"{PREFIX}rel2", NOWHERE), "strict",
             "Helm release into a namespace nobody creates (createNamespace: false)"),
    ]


def program(kubeconfig: str, context: str, chart: str) -> Callable[[], None]:
    def run() -> None:
        import pulumi
        import pulumi_kubernetes as k8s

        from components.cluster import kubernetes_provider

        providers = {
            "strict": kubernetes_provider("strict", cluster_identifier="e2e-model", kubeconfig=kubeconfig, context=context),
            "adopting": kubernetes_provider("adopting", cluster_identifier="e2e-model", kubeconfig=kubeconfig, context=context,
                                            upsert_existing_objects=True),
        }
        for c in cases(chart):
            opts = pulumi.ResourceOptions(provider=providers[c.provider], retain_on_delete=c.resource.startswith("ns-existing"))
            if c.type == "kubernetes:helm.sh/v3:Release":
                k8s.helm.v3.Release(c.resource, chart=chart, name=c.inputs["name"], namespace=c.inputs["namespace"],
                                    create_namespace=False, skip_await=True, opts=opts)
            elif c.type == "kubernetes:core/v1:NamespacePatch":
                k8s.core.v1.NamespacePatch(c.resource, metadata=c.inputs["metadata"], opts=opts)
            elif c.type == "kubernetes:core/v1:Namespace":
                k8s.core.v1.Namespace(c.resource, metadata=c.inputs["metadata"], opts=opts)
            elif c.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy":
                k8s.networking.v1.NetworkPolicy(c.resource, metadata=c.inputs["metadata"], spec=c.inputs["spec"], opts=opts)
            else:
                k8s.apiextensions.CustomResource(c.resource, api_version=c.inputs["apiVersion"], kind=c.inputs["kind"],
                                                 metadata=c.inputs["metadata"], opts=opts)

    return run


def model_verdicts(chart: str) -> dict[str, list[str]]:
    """resource -> the rules tools/apiserver.py refuses it by ([] = allowed), on the same cluster state."""
    from tools import apiserver

    base = f"urn:pulumi:{STACK}::{PROJECT}::"
    records = [
        Registration("pulumi:providers:kubernetes", name, f"{base}pulumi:providers:kubernetes::{name}",
                     {"upsertExistingObjects": "true" if name == "adopting" else "false"})
        for name in ("strict", "adopting")
    ]
    for c in cases(chart):
        provider = f"{base}pulumi:providers:kubernetes::{c.provider}::id"
        records.append(Registration(c.type, c.resource, f"{base}{c.type}::{c.resource}", c.inputs, provider=provider))
    present = {"default", "kube-system", "kube-public", "kube-node-lease", EXISTING, ADOPTED, HELM_NS}
    refusals = apiserver.check(records, apiserver.Cluster(namespaces=set(present)), present, creates_cluster=False)
    out: dict[str, list[str]] = {c.resource: [] for c in cases(chart)}
    for r in refusals:
        name = r.resource.split(" ", 1)[1]
        out.setdefault(name, []).append(r.rule)
    return out


def scope_disagreements(kube: Any) -> tuple[list[str], int]:
    """Kinds whose scope the model gets wrong, and how many kinds were compared."""
    from components.kyverno import crd_manifests
    from tools import apiserver

    out, compared = [], 0
    for group, versions in kube.groups():
        if group not in apiserver.BUILTIN_GROUPS:
            continue
        seen = set()
        for v in versions:
            for res in kube._resources(f"{group}/{v}" if group else v):
                if "/" in res["name"] or res["kind"] in seen:
                    continue
                seen.add(res["kind"])
                compared += 1
                model = (group, res["kind"]) not in apiserver.CLUSTER_SCOPED
                if model != bool(res.get("namespaced")):
                    out.append(f"{res['kind']}{'.' + group if group else ''}: model {'namespaced' if model else 'cluster'}, "
                               f"API server {'namespaced' if res.get('namespaced') else 'cluster'}")
    # CRDs the stack does not create are guessed: `Cluster*` kinds cluster-scoped, the rest namespaced.
    for crd in crd_manifests():
        kind, scope = crd["spec"]["names"]["kind"], crd["spec"]["scope"]
        compared += 1
        guess = "Cluster" if kind.startswith("Cluster") else "Namespaced"
        if guess != scope:
            out.append(f"{kind}.{crd['spec']['group']} (when the stack does not create its CRD): model guesses {guess}, CRD says {scope}")
    return out, compared
