"""The `apiserver-parity` scenario of `make e2e`: every rule tools/apiserver.py has, or had, against the real
provider and API server.

One small Pulumi stack (`e2e-model`) registers, through the same provider helper as the program, one resource
per case; the same registrations are replayed through ``apiserver.check`` with the same cluster state. Each case
says what the model must decide, what the real `pulumi up` must do (an error on that resource, or created) and
whether the rule is kept or was retired because the real engine decides it (the case then stands in for the
mock-only test that went with the rule). A second stack (`e2e-model-unknown`) previews an object whose name is
unknown at preview. Rules that need GKE, Kyverno's pods or kubectl are listed with why they stay.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Callable

from components import yaml_io
from tools.mockrun import UNKNOWN, Registration

PREFIX = "e2e-model-"
EXISTING = f"{PREFIX}existing"
ADOPTED = f"{PREFIX}adopted"
HELM_NS = f"{PREFIX}helm"
MISSING = f"{PREFIX}missing"
NOWHERE = f"{PREFIX}nowhere"
NEW = f"{PREFIX}new"
TWICE = f"{PREFIX}twice"
RACE = f"{PREFIX}race"
RACES = 4
"""Namespace + NetworkPolicy pairs created in one `up` without a dependency between them."""
PROJECT = "llm-platform"
STACK = "e2e-model"
UNKNOWN_STACK = "e2e-model-unknown"
PRESENT = {"default", "kube-system", "kube-public", "kube-node-lease", EXISTING, ADOPTED, HELM_NS}
"""The namespaces in the cluster before the `up` (the scenario creates the last three)."""

# Why a kept rule stays: the real engines cannot show it here.
NOT_RUNNABLE = {
    "engine": "a policy's Ready needs Kyverno's pods (no kubelet here); Dataplane V2 is GKE's",
    "egress": "private nodes and Cloud NAT are GKE's and the cloud's",
    "ready": "only Kyverno's pods make a policy Ready (no kubelet here)",
    "path": "kubectl's expansion of KUBECONFIG, run by the pulumi-command provider (not served to the e2e)",
}
PROVIDER_434 = ("pulumi-kubernetes 4.34 creates without upsert and gets AlreadyExists (pulumi/pulumi-kubernetes#4278); "
                "the only provider the Go module proxy serves, 4.25.0, always upserts under server-side apply")


@dataclass
class Case:
    resource: str
    """Pulumi resource name in the e2e-model stack."""
    type: str
    inputs: dict[str, Any]
    provider: str
    """strict | adopting"""
    what: str
    rule: str
    """The tools/apiserver.py rule the case is about."""
    model: bool
    """The model refuses it."""
    real: str
    """What the real `up` must do: `fails`, `created`, or `either` (a race: reported, not asserted)."""
    verdict: str
    """keep | retire | baseline"""
    why: str
    depends_on: str = ""
    """Another case's resource this one depends on."""


def write_chart(dest: pathlib.Path) -> pathlib.Path:
    """A one-ConfigMap chart: the smallest Helm release."""
    chart = dest / "e2e-model"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml_io.dump({"apiVersion": "v2", "name": "e2e-model", "version": "0.1.0"}))
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  a: b\n")
    return chart


def _ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _netpol(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


def cases(chart: str) -> list[Case]:
    def release(name: str, namespace: str) -> dict[str, Any]:
        return {"chart": chart, "name": name, "namespace": namespace, "createNamespace": False, "skipAwait": True}

    ns, netpol, rel = "kubernetes:core/v1:Namespace", "kubernetes:networking.k8s.io/v1:NetworkPolicy", "kubernetes:helm.sh/v3:Release"
    out = [
        Case("ns-new", ns, _ns(NEW), "strict", "create of a namespace that does not exist", "exists", False, "created",
             "baseline", "nothing to refuse"),
        Case("ns-existing-strict", ns, _ns(EXISTING), "strict", "create of an existing namespace, provider without "
             "upsertExistingObjects", "exists", True, "created", "keep", PROVIDER_434),
        Case("ns-twice-a", ns, _ns(TWICE), "strict", "one namespace created by two resources of the stack (first)",
             "exists", False, "created", "keep", PROVIDER_434),
        Case("ns-twice-b", ns, _ns(TWICE), "strict", "one namespace created by two resources of the stack (second)",
             "exists", True, "created", "keep", PROVIDER_434, depends_on="ns-twice-a"),
        Case("ns-existing-adopting", ns, _ns(ADOPTED), "adopting", "create of an existing namespace, provider with "
             "upsertExistingObjects", "exists", False, "created", "keep", "adoption: the other half of the rule above"),
        Case("patch-missing", "kubernetes:core/v1:NamespacePatch",
             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MISSING, "labels": {"a": "b"}}}, "strict",
             "NamespacePatch of a namespace that does not exist", "exists (patch)", False, "created", "retire",
             "the real engine does not refuse it: the server-side apply patch creates the namespace"),
        Case("release-a", rel, release(f"{PREFIX}rel", HELM_NS), "strict", "Helm release", "exists (Helm)", False, "created",
             "retire", "the real Helm refuses the second release of a name"),
        Case("release-b", rel, release(f"{PREFIX}rel", HELM_NS), "strict", "a second Helm release of the same name and "
             "namespace", "exists (Helm)", False, "fails", "retire", "the real Helm refuses it: `cannot re-use a name`",
             depends_on="release-a"),
        Case("netpol-missing-namespace", netpol, _netpol(NOWHERE), "strict", "NetworkPolicy in a namespace nobody creates",
             "namespace", True, "fails", "keep", "the real API server refuses it too (NotFound); the rule stays for the "
             "ordering half (below)"),
        Case("release-missing-namespace", rel, release(f"{PREFIX}rel2", NOWHERE), "strict", "Helm release into a namespace "
             "nobody creates (createNamespace: false)", "namespace", True, "fails", "keep", "the real Helm refuses it too "
             "(NotFound); the rule stays for the ordering half"),
        Case("custom-resource-no-crd", "kubernetes:example.com/v1:Widget",
             {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}}, "strict",
             "custom resource whose CRD does not exist", "crd", True, "fails", "keep", "the real API server refuses it too; "
             "the rule stays for the ordering half and for the CRDs only GKE installs (NetworkLogging)"),
    ]
    for i in range(RACES):
        out.append(Case(f"race-ns-{i}", ns, _ns(f"{RACE}-{i}"), "strict", f"namespace of race pair {i}", "namespace", False,
                        "created", "baseline", "created with its policy, no dependency between them"))
        out.append(Case(f"race-netpol-{i}", netpol, _netpol(f"{RACE}-{i}"), "strict", "NetworkPolicy in a namespace the same "
                        "up creates, without depending on it", "namespace", True, "either", "keep",
                        "a race: the real engine runs both creates at once"))
    return out


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
        made: dict[str, pulumi.Resource] = {}
        for c in cases(chart):
            opts = pulumi.ResourceOptions(provider=providers[c.provider], retain_on_delete=c.resource.startswith("ns-existing"),
                                          depends_on=[made[c.depends_on]] if c.depends_on else None)
            if c.type == "kubernetes:helm.sh/v3:Release":
                made[c.resource] = k8s.helm.v3.Release(c.resource, chart=chart, name=c.inputs["name"], namespace=c.inputs["namespace"],
                                                       create_namespace=False, skip_await=True, opts=opts)
            elif c.type == "kubernetes:core/v1:NamespacePatch":
                made[c.resource] = k8s.core.v1.NamespacePatch(c.resource, metadata=c.inputs["metadata"], opts=opts)
            elif c.type == "kubernetes:core/v1:Namespace":
                made[c.resource] = k8s.core.v1.Namespace(c.resource, metadata=c.inputs["metadata"], opts=opts)
            elif c.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy":
                made[c.resource] = k8s.networking.v1.NetworkPolicy(c.resource, metadata=c.inputs["metadata"], spec=c.inputs["spec"],
                                                                   opts=opts)
            else:
                made[c.resource] = k8s.apiextensions.CustomResource(c.resource, api_version=c.inputs["apiVersion"], kind=c.inputs["kind"],
                                                                    metadata=c.inputs["metadata"], opts=opts)

    return run


def unknown_program(kubeconfig: str, context: str) -> Callable[[], None]:
    """A namespace whose name is another resource's output: unknown in the preview of a new stack."""

    def run() -> None:
        import pulumi
        import pulumi_kubernetes as k8s

        from components.cluster import kubernetes_provider

        provider = kubernetes_provider("strict", cluster_identifier="e2e-model", kubeconfig=kubeconfig, context=context)
        opts = pulumi.ResourceOptions(provider=provider)
        handle = k8s.core.v1.ConfigMap("handle", metadata={"name": f"{PREFIX}handle", "namespace": "default"}, opts=opts)
        k8s.core.v1.Namespace("unknown-name", metadata={"name": handle.metadata.apply(lambda _: f"{PREFIX}unknown")}, opts=opts)

    return run


def model_verdicts(chart: str) -> dict[str, list[str]]:
    """resource -> the rules tools/apiserver.py refuses it by ([] = allowed), on the same cluster state; the
    unknown-name namespace as `unknown-name`."""
    from tools import apiserver

    base = f"urn:pulumi:{STACK}::{PROJECT}::"
    records = [
        Registration("pulumi:providers:kubernetes", name, f"{base}pulumi:providers:kubernetes::{name}",
                     {"upsertExistingObjects": "true" if name == "adopting" else "false"})
        for name in ("strict", "adopting")
    ]
    urn = {c.resource: f"{base}{c.type}::{c.resource}" for c in cases(chart)}
    for c in cases(chart):
        provider = f"{base}pulumi:providers:kubernetes::{c.provider}::id"
        records.append(Registration(c.type, c.resource, urn[c.resource], c.inputs, provider=provider,
                                    dependencies=[urn[c.depends_on]] if c.depends_on else []))
    records.append(Registration("kubernetes:core/v1:Namespace", "unknown-name", f"{base}kubernetes:core/v1:Namespace::unknown-name",
                                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": UNKNOWN}},
                                provider=f"{base}pulumi:providers:kubernetes::strict::id"))
    refusals = apiserver.check(records, apiserver.Cluster(namespaces=set(PRESENT)), PRESENT, creates_cluster=False)
    out: dict[str, list[str]] = {c.resource: [] for c in cases(chart)}
    out["unknown-name"] = []
    for r in refusals:
        out.setdefault(r.resource.split(" ", 1)[1], []).append(r.rule)
    return out


def compare(chart: str, failed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(rows, problems): one row per case, `rule | case | model | real | verdict: why`; a problem where the model
    or the real engine decided otherwise than the case says. ``failed``: resource -> the real error."""
    model = model_verdicts(chart)
    rows, problems = [], []
    for c in cases(chart):
        refused = model[c.resource]
        real = f"failed: {failed[c.resource]}" if c.resource in failed else "created"
        said = f"model {'refused [' + ', '.join(refused) + ']' if refused else 'allowed'}; real {real}"
        rows.append(f"{c.rule} | {c.what} | {said} | {c.verdict}: {c.why}")
        if bool(refused) != c.model:
            problems.append(f"{c.what}: the model {'refused' if refused else 'allowed'} it, the case says "
                            f"{'refused' if c.model else 'allowed'}")
        if c.real != "either" and (c.resource in failed) != (c.real == "fails"):
            problems.append(f"{c.what}: the real up {'failed' if c.resource in failed else 'created it'}, the case says {c.real}")
    races = [c.resource for c in cases(chart) if c.real == "either"]
    lost = [r for r in races if r in failed]
    rows.append(f"namespace | race: {len(lost)} of {len(races)} NetworkPolicies created in the same up as their namespace, "
                "without depending on it, failed for real | keep: the real engine shows it only by chance")
    return rows, problems
