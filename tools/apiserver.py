"""A strict in-memory model of the Kubernetes API server (and of the engine's ordering) behind the mocks.

The mock runner returns inputs as outputs and never refuses anything. This model replays what
the program registered (:mod:`tools.mockrun` records) against a cluster state and refuses
what a real first ``pulumi up`` would fail on:

* **namespace**: a namespaced object (or a Helm release's target namespace) whose namespace is
  neither created by a resource this object transitively depends on (so the engine creates it
  first), nor declared pre-existing by the stack's config *and* present in the cluster;
* **crd**: a custom resource whose CustomResourceDefinition is neither created by a resource it
  depends on nor already in the cluster;
* **exists**: a create of an object that already exists (in the cluster, or created twice by the
  stack) through a provider without ``upsertExistingObjects`` (pulumi-kubernetes 4.34 refuses
  with AlreadyExists); a ``*Patch`` of an object that does not exist (the patch would create an
  object nobody owns);
* **engine**: a ClusterPolicy that does not depend on the Kyverno Helm release (no admission
  engine to make it Ready), a NetworkPolicy on a cluster the stack creates that does not depend
  on the GKE cluster with Dataplane V2 (the enforcer), and — private nodes — a Helm release
  that does not depend on a Cloud NAT unless the config says egress exists (image pulls);
* **ready**: a Kyverno policy without ``pulumi.com/waitFor: condition=Ready`` (``up`` would report
  success before the policy enforces anything);
* **path**: a command whose ``KUBECONFIG`` is not an absolute, expanded path (kubectl expands
  neither ``~`` nor ``$VAR`` in it);
* **unknown**: an object whose apiVersion, kind, name or namespace is unknown (preview of a new
  stack): the engine and provider could not tell which object it is.

"Depends on" is the engine's real ordering: explicit ``depends_on``, input dependencies and the
provider, closed transitively. Registration order alone proves nothing (the engine runs
independent creates in parallel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from tools.mockrun import UNKNOWN, Registration

# Kinds that are not namespaced, for built-in API groups; CRDs declare their own scope.
CLUSTER_SCOPED = {
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "StorageClass"),
    ("node.k8s.io", "RuntimeClass"),
}
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "node.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "certificates.k8s.io",
}
KYVERNO_CHART = "kyverno"


def _is_kyverno_chart(chart: object) -> bool:
    """The chart repository's `kyverno`, or a local chart directory named so (kyverno.install.chartPath, make e2e)."""
    return isinstance(chart, str) and chart.rstrip("/").rsplit("/", 1)[-1] == KYVERNO_CHART


@dataclass(frozen=True)
class Key:
    """Identity of an object in the API server."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}{'.' + self.group if self.group else ''} {where}{self.name}"


# What GKE installs on every Dataplane V2 cluster that the stack may patch: the network policy logging
# CRD and its cluster-scoped singleton `default` (GKE docs, "Use network policy logging").
GKE_DATAPLANE_V2_OBJECTS = {
    Key("apiextensions.k8s.io", "CustomResourceDefinition", "", "networkloggings.networking.gke.io"),
    Key("networking.gke.io", "NetworkLogging", "", "default"),
}
CLUSTER_SCOPED_CUSTOM = {("networking.gke.io", "NetworkLogging")}


@dataclass
class Cluster:
    """What exists in the cluster before the ``pulumi up`` (a brand-new GKE cluster by default)."""

    namespaces: set[str] = field(default_factory=lambda: {"default", "kube-system", "kube-public", "kube-node-lease"})
    objects: set[Key] = field(default_factory=lambda: set(GKE_DATAPLANE_V2_OBJECTS))
    """Other pre-existing objects (e.g. another installation's CRDs)."""
    helm_releases: set[tuple[str, str]] = field(default_factory=set)
    """(namespace, name) of Helm releases already installed."""

    def all_keys(self) -> set[Key]:
        return {*self.objects, *(Key("", "Namespace", "", n) for n in self.namespaces)}


@dataclass
class Refusal:
    """One thing a real API server / engine would refuse."""

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

    # Objects the stack creates, by key, and CRDs it creates: (group, kind) -> (CRD record, scope).
    crds: dict[tuple[str, str], tuple[Registration, str]] = {}
    for r in records:
        if r.is_kubernetes_object and r.inputs.get("kind") == "CustomResourceDefinition" and not r.type.endswith("Patch"):
            spec = r.inputs.get("spec", {})
            crds[(spec.get("group", ""), spec.get("names", {}).get("kind", ""))] = (r, spec.get("scope", "Namespaced"))

    def key_of(r: Registration) -> Optional[Key]:
        obj = r.inputs
        meta = obj.get("metadata") or {}
        fields = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "metadata.name": meta.get("name"),
        }
        for path, value in fields.items():
            if value is None or value == UNKNOWN:
                refusals.append(Refusal("unknown", _label(r), f"{path} is unknown or missing: the provider cannot tell which object this is"))
                return None
        group, kind = _group(obj["apiVersion"]), obj["kind"]
        if (group, kind) in crds:
            namespaced = crds[(group, kind)][1] == "Namespaced"
        elif group in BUILTIN_GROUPS:
            namespaced = (group, kind) not in CLUSTER_SCOPED
        elif (group, kind) in CLUSTER_SCOPED_CUSTOM:
            namespaced = False
        else:
            # A custom resource whose CRD the stack does not create: kyverno.io Cluster* are cluster-scoped.
            namespaced = not kind.startswith("Cluster")
        ns = ""
        if namespaced:
            ns = meta.get("namespace") or ""
            if ns == UNKNOWN:
                refusals.append(Refusal("unknown", _label(r), "metadata.namespace is unknown"))
                return None
            ns = ns or "default"
        return Key(group, kind, ns, meta["name"])

    def namespace_ready(r: Registration, ns: str, what: str) -> None:
        created_by = [
            a
            for a in ancestors(r)
            if a.is_kubernetes_object and a.inputs.get("kind") == "Namespace" and (a.inputs.get("metadata") or {}).get("name") == ns
        ]
        if created_by:
            return
        if ns in declared:
            if ns not in cluster.namespaces:
                refusals.append(
                    Refusal("namespace", _label(r), f"{what} namespace {ns!r} is declared pre-existing by the config but does not exist in the cluster")
                )
            return
        refusals.append(
            Refusal(
                "namespace",
                _label(r),
                f"{what} namespace {ns!r} is not created by anything this object depends on and not declared "
                "pre-existing: on a new cluster the API server answers NotFound",
            )
        )

    state = cluster.all_keys()
    created: dict[Key, Registration] = {}
    helm = set(cluster.helm_releases)
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
            ns = r.inputs.get("namespace") or "default"
            if not r.inputs.get("createNamespace"):
                namespace_ready(r, ns, "release")
            name = r.inputs.get("name") or r.name
            if (ns, name) in helm:
                refusals.append(Refusal("exists", _label(r), f"Helm release {ns}/{name} is already installed: `helm install` fails (cannot re-use a name)"))
            helm.add((ns, name))
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

        # crd
        if key.group not in BUILTIN_GROUPS:
            crd = crds.get((key.group, key.kind))
            if crd is None:
                if not any(k.kind == "CustomResourceDefinition" and k.name.endswith("." + key.group) for k in state):
                    refusals.append(Refusal("crd", _label(r), f"no CustomResourceDefinition for {key.kind}.{key.group}: the API server has no such resource"))
            elif crd[0].urn not in closure[r.urn]:
                refusals.append(
                    Refusal("crd", _label(r), f"does not depend on its CRD {crd[0].inputs['metadata']['name']}: it may be created first and refused")
                )

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

        # exists
        if is_patch:
            if key not in state:
                refusals.append(Refusal("exists", _label(r), f"patches {key}, which does not exist: the patch would create an object nobody owns"))
                state.add(key)
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
