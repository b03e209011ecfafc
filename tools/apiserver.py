"""The strict offline model of a first ``pulumi up``: what the real engines cannot show here.

The mock runner returns inputs as outputs and never refuses anything. This model replays what the program
registered (:mod:`tools.mockrun` records) and refuses what a real first ``pulumi up`` would fail on, for the
rules the local control plane of ``make e2e`` cannot decide (the scenario ``apiserver-parity`` runs every
rule's case against the real provider and API server; docs/real-engines.md has the table):

* **namespace**: a namespaced object (or a Helm release's target namespace) whose namespace is neither created
  by a resource this object transitively depends on nor declared pre-existing by the stack's config. A
  namespace nobody creates the real API server refuses (NotFound) and the e2e shows it; a namespace created
  but not depended on is a race the real engine shows only by chance;
* **crd**: the same for a custom resource and its CustomResourceDefinition (or a CRD GKE installs);
* **exists**: a create of an object that already exists (in the cluster, or created twice by the stack)
  through a provider without ``upsertExistingObjects``: pulumi-kubernetes 4.34 refuses with AlreadyExists;
  the only provider the Go module proxy serves (4.25.0) always upserts, so the e2e cannot show it;
* **engine**: a ClusterPolicy that does not depend on the Kyverno Helm release (needs Kyverno's pods), a
  NetworkPolicy on a cluster the stack creates that does not depend on the GKE cluster with Dataplane V2;
* **egress**: with private nodes, a Helm release that does not depend on a Cloud NAT (GKE, Cloud NAT);
* **ready**: a Kyverno policy without ``pulumi.com/waitFor: condition=Ready`` (needs Kyverno's pods);
* **path**: a command whose ``KUBECONFIG`` is not an absolute, expanded path (kubectl, pulumi-command).

"Depends on" is the engine's real ordering: explicit ``depends_on``, input dependencies and the provider,
closed transitively. Registration order alone proves nothing (the engine runs independent creates in parallel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from tools.mockrun import UNKNOWN, Registration

KYVERNO_CHART = "kyverno"


def _is_kyverno_chart(chart: object) -> bool:
    """The chart repository's `kyverno`, or a local chart directory named so (kyverno.install.chartPath, make e2e)."""
    return isinstance(chart, str) and chart.rstrip("/").rsplit("/", 1)[-1] == KYVERNO_CHART


@dataclass(frozen=True)
class Key:
    """Identity of an object in the API server (namespace "" for a cluster-scoped one)."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}{'.' + self.group if self.group else ''} {where}{self.name}"


# What GKE installs on every Dataplane V2 cluster that the stack may patch: the network policy logging
# CRD and its cluster-scoped singleton `default` (GKE docs, "Use network policy logging"). GKE-only: the
# local control plane has neither.
GKE_DATAPLANE_V2_OBJECTS = {
    Key("apiextensions.k8s.io", "CustomResourceDefinition", "", "networkloggings.networking.gke.io"),
    Key("networking.gke.io", "NetworkLogging", "", "default"),
}


@dataclass
class Cluster:
    """What exists in the cluster before the ``pulumi up`` (a brand-new GKE cluster by default)."""

    namespaces: set[str] = field(default_factory=lambda: {"default", "kube-system", "kube-public", "kube-node-lease"})
    objects: set[Key] = field(default_factory=lambda: set(GKE_DATAPLANE_V2_OBJECTS))
    """Other pre-existing objects (e.g. another installation's CRDs)."""

    def all_keys(self) -> set[Key]:
        return {*self.objects, *(Key("", "Namespace", "", n) for n in self.namespaces)}


@dataclass
class Refusal:
    """One thing a real first `pulumi up` would fail on."""

    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource}: {self.message}"


def _group(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _closure(records: list[Registration]) -> dict[str, set[str]]:
    """URN -> every URN it transitively depends on (explicit, input and provider dependencies)."""
    direct: dict[str, set[str]] = {}
    for r in records:
        deps = set(r.dependencies)
        if r.provider:
            # A provider reference is "<urn>::<id>"; the engine creates the provider first.
            deps.add(r.provider.rsplit("::", 1)[0])
        direct[r.urn] = deps
    memo: dict[str, set[str]] = {}

    def visit(urn: str, stack: tuple[str, ...] = ()) -> set[str]:
        if urn in memo:
            return memo[urn]
        if urn in stack:
            raise ValueError(f"dependency cycle through {urn}")
        out: set[str] = set()
        for d in direct.get(urn, ()):
            out.add(d)
            out |= visit(d, stack + (urn,))
        memo[urn] = out
        return out

    return {r.urn: visit(r.urn) for r in records}


def _label(r: Registration) -> str:
    return f"{r.type} {r.name}"


def _known(value: object) -> Optional[str]:
    return value if isinstance(value, str) and value != UNKNOWN else None


def check(
    records: list[Registration],
    cluster: Optional[Cluster] = None,
    declared_namespaces: Iterable[str] = (),
    creates_cluster: bool = True,
    private_egress_declared: bool = False,
) -> list[Refusal]:
    """Replay ``records`` against ``cluster``; return every refusal (empty: a real up would pass these checks).

    ``declared_namespaces``: namespaces the stack's config says exist before the first up.
    ``creates_cluster``: the stack creates the GKE cluster (a new, empty cluster) itself.
    ``private_egress_declared``: private nodes have egress the stack does not create.
    An object whose identity is unknown (a preview) is skipped: the preview test requires every Kubernetes
    input known (tests/test_deploy_path.py), and the real preview does not refuse it.
    """
    cluster = cluster or Cluster()
    declared = set(declared_namespaces)
    refusals: list[Refusal] = []
    by_urn = {r.urn: r for r in records}
    closure = _closure(records)
    providers = {r.urn: r for r in records if r.type == "pulumi:providers:kubernetes"}

    def provider_of(r: Registration) -> Optional[Registration]:
        return providers.get(r.provider.rsplit("::", 1)[0]) if r.provider else None

    def ancestors(r: Registration) -> list[Registration]:
        return [by_urn[u] for u in closure[r.urn] if u in by_urn]

    # CRDs the stack creates: (group, kind) -> CRD record.
    crds: dict[tuple[str, str], Registration] = {}
    for r in records:
        if r.is_kubernetes_object and r.inputs.get("kind") == "CustomResourceDefinition" and not r.type.endswith("Patch"):
            spec = r.inputs.get("spec", {})
            crds[(spec.get("group", ""), spec.get("names", {}).get("kind", ""))] = r

    def key_of(r: Registration) -> Optional[Key]:
        meta = r.inputs.get("metadata") or {}
        api_version, kind, name = (_known(r.inputs.get("apiVersion")), _known(r.inputs.get("kind")), _known(meta.get("name")))
        namespace = meta.get("namespace") or ""
        if api_version is None or kind is None or name is None or namespace == UNKNOWN:
            return None
        # The namespace the object says; the API server ignores it on a cluster-scoped kind, which the stack never sets.
        return Key(_group(api_version), kind, namespace, name)

    def namespace_ready(r: Registration, ns: str, what: str) -> None:
        if ns in declared or any(
            a.is_kubernetes_object and a.inputs.get("kind") == "Namespace" and (a.inputs.get("metadata") or {}).get("name") == ns
            for a in ancestors(r)
        ):
            return
        refusals.append(
            Refusal(
                "namespace",
                _label(r),
                f"{what} namespace {ns!r} is not created by anything this object depends on and not declared "
                "pre-existing: the API server answers NotFound if it is not there yet",
            )
        )

    state = cluster.all_keys()
    created: dict[Key, Registration] = {}
    for r in records:
        if not r.custom:
            continue
        if r.type == "command:local:Command":
            path = (r.inputs.get("environment") or {}).get("KUBECONFIG")
            if path not in (None, UNKNOWN) and any(
                not part.startswith("/") or "~" in part or "$" in part for part in path.split(":")
            ):
                refusals.append(Refusal("path", _label(r), f"KUBECONFIG={path!r}: kubectl expands neither ~ nor $VAR; use an absolute path"))
            continue
        if r.type == "kubernetes:helm.sh/v3:Release":
            if not r.inputs.get("createNamespace"):
                namespace_ready(r, r.inputs.get("namespace") or "default", "release")
            if creates_cluster:
                _check_egress(r, ancestors(r), records, private_egress_declared, refusals)
            continue
        if not r.is_kubernetes_object:
            continue
        key = key_of(r)
        if key is None:
            continue
        is_patch = r.type.endswith("Patch")
        provider = provider_of(r)
        upsert = bool(provider and str(provider.inputs.get("upsertExistingObjects")).lower() == "true")

        # namespace
        if key.namespace:
            namespace_ready(r, key.namespace, "its")

        # crd: a kind of a group the stack creates a CRD for, or whose CRD is in the cluster (GKE's)
        crd = crds.get((key.group, key.kind))
        if crd is not None:
            if crd.urn not in closure[r.urn]:
                refusals.append(
                    Refusal("crd", _label(r), f"does not depend on its CRD {crd.inputs['metadata']['name']}: it may be created first and refused")
                )
        # Built-in groups are the dotless legacy ones and *.k8s.io (a protected suffix, API review): anything else is a CRD's.
        elif "." in key.group and not key.group.endswith(".k8s.io") and not any(
            k.kind == "CustomResourceDefinition" and k.name.endswith("." + key.group) for k in state
        ):
            refusals.append(Refusal("crd", _label(r), f"no CustomResourceDefinition for {key.kind}.{key.group}: the API server has no such resource"))

        # engine
        if key.group == "kyverno.io":
            if not any(a.type == "kubernetes:helm.sh/v3:Release" and _is_kyverno_chart(a.inputs.get("chart")) for a in ancestors(r)):
                refusals.append(
                    Refusal("engine", _label(r), "a Kyverno policy that does not depend on the Kyverno release: no engine to serve or make it Ready")
                )
            annotations = (r.inputs.get("metadata") or {}).get("annotations") or {}
            if key.kind in ("ClusterPolicy", "Policy") and annotations.get("pulumi.com/waitFor") != "condition=Ready":
                refusals.append(
                    Refusal("ready", _label(r), "no pulumi.com/waitFor: condition=Ready: `up` succeeds before the policy enforces")
                )
        if key.kind == "NetworkPolicy" and creates_cluster:
            if not any(
                a.type == "gcp:container/cluster:Cluster" and a.inputs.get("datapathProvider") == "ADVANCED_DATAPATH" for a in ancestors(r)
            ):
                refusals.append(
                    Refusal("engine", _label(r), "a NetworkPolicy that does not depend on the Dataplane V2 cluster that enforces it")
                )

        # exists (a patch of a missing object is created by the server-side apply: the real engine does not refuse it)
        if is_patch:
            continue
        if key in created:
            refusals.append(Refusal("exists", _label(r), f"{key} is also created by {_label(created[key])}"))
        elif key in state and not upsert:
            refusals.append(
                Refusal(
                    "exists",
                    _label(r),
                    f"{key} already exists and the provider does not upsert (upsertExistingObjects): the create fails with AlreadyExists",
                )
            )
        created[key] = r
        state.add(key)
    return refusals


def _check_egress(
    release: Registration,
    ancestors: list[Registration],
    records: list[Registration],
    declared: bool,
    refusals: list[Refusal],
) -> None:
    """A Helm release pulls images: on private nodes it needs egress (Cloud NAT) first."""
    clusters = [r for r in records if r.type == "gcp:container/cluster:Cluster"]
    private = any((c.inputs.get("privateClusterConfig") or {}).get("enablePrivateNodes") for c in clusters)
    if not private or declared:
        return
    if not any(a.type == "gcp:compute/routerNat:RouterNat" for a in ancestors):
        refusals.append(
            Refusal(
                "egress",
                _label(release),
                "private nodes and no Cloud NAT this release depends on: its images cannot be pulled and --wait times out",
            )
        )
