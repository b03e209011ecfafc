"""SR2: the Kyverno admission engine (chart 3.8.1) and the platform's ClusterPolicies.

Order on create: preflight (refuses a cluster where another Kyverno owns the namespace or
CRDs) -> namespace -> CRDs (server-side) -> webhook-cleanup guard -> Helm release (waits for
the admission controller) -> policies (the `up` waits until each is Ready). Destroy runs it backwards, so the
policies go first, then Kyverno, then the guard deletes any webhook configuration Kyverno
left behind (kyverno/kyverno#16492), then the CRDs. See docs/decisions/0001-kyverno-install.md.
SR2's ClusterPolicy is its file under policies/kyverno/ with the stack's parameters (components/policy_model.py).
"""

from __future__ import annotations

import copy
import json
import pathlib
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components import kueue_policy, policy_model, yaml_io
from components.cluster_access import ClusterAccess
from components.config import KyvernoConfig
from components.platform_facts import DEFAULT_PROTECTED_NAMESPACES

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = "kyverno"
CHART_VERSION = "3.8.1"  # Kyverno v1.18.1
CHART_REPO = "https://kyverno.github.io/kyverno/"
NAMESPACE = "kyverno"
CRD_DIR = ROOT / "vendor" / "kyverno" / CHART_VERSION / "crds"
WEBHOOK_LABEL = "webhook.kyverno.io/managed-by=kyverno"

# Shell run by the cleanup guard when it is deleted (after the Helm release is gone).
CLEANUP_SCRIPT = """set -eu
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
args=""
if [ -n "${KUBECONFIG_CONTENT:-}" ]; then printf '%s' "$KUBECONFIG_CONTENT" > "$kc"; args="--kubeconfig $kc"; fi
if [ -n "${KUBE_CONTEXT:-}" ]; then args="$args --context $KUBE_CONTEXT"; fi
kubectl $args delete validatingwebhookconfigurations,mutatingwebhookconfigurations \\
  -l webhook.kyverno.io/managed-by=kyverno --ignore-not-found --wait=true
"""
# Shell run once, before the `kyverno` namespace is created: Kyverno's namespace and CRDs are
# owned by this stack (deleted with it), so it refuses a cluster where another installation
# already owns them instead of adopting (and later deleting) someone else's Kyverno.
OWNED_LABEL = "app.kubernetes.io/managed-by=llm-platform"
FOREIGN_KYVERNO_PREFLIGHT = """set -eu
command -v kubectl >/dev/null 2>&1 || { echo 'kubectl is required: it checks the cluster for another Kyverno installation and, at destroy time, removes the webhook configurations Kyverno leaves behind' >&2; exit 1; }
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
args=""
if [ -n "${KUBECONFIG_CONTENT:-}" ]; then printf '%s' "$KUBECONFIG_CONTENT" > "$kc"; args="--kubeconfig $kc"; fi
if [ -n "${KUBE_CONTEXT:-}" ]; then args="$args --context $KUBE_CONTEXT"; fi
ours="$(kubectl $args get namespace kyverno -l app.kubernetes.io/managed-by=llm-platform -o name --ignore-not-found)"
if [ -z "$ours" ]; then
  if [ -n "$(kubectl $args get namespace kyverno -o name --ignore-not-found)" ]; then
    echo 'refusing: namespace kyverno already exists and was not created by llm-platform. This stack installs and owns Kyverno 3.8.1 (namespace, CRDs, release) and does not adopt another installation. Uninstall the other Kyverno (helm uninstall -n kyverno kyverno; kubectl delete namespace kyverno; delete its *.kyverno.io CRDs), or set llm-platform:security false.' >&2
    exit 1
  fi
  if [ -n "$(kubectl $args get customresourcedefinitions clusterpolicies.kyverno.io -o name --ignore-not-found)" ]; then
    echo 'refusing: CRD clusterpolicies.kyverno.io already exists (another Kyverno installation, or its leftovers). This stack owns the Kyverno CRDs and would delete them with the stack. Remove the other installation and its *.kyverno.io CRDs, or set llm-platform:security false.' >&2
    exit 1
  fi
fi
"""

# The ClusterPolicy is Ready only once Kyverno has compiled it and registered its webhook rules:
# pulumi-kubernetes (>= 4.18, pinned 4.34.2) waits for this condition and fails the `up` when it
# does not come within the timeout. On create only: Kyverno sets Ready without observedGeneration, so
# after an update the old Ready=True satisfies the wait at once (docs/deploy.md, "What waitFor waits for").
POLICY_READY_ANNOTATIONS = {
    "pulumi.com/waitFor": "condition=Ready",
    "pulumi.com/timeoutSeconds": "300",
}

CLEANUP_PREFLIGHT = (
    "command -v kubectl >/dev/null 2>&1 || { echo 'kubectl is required: at destroy time it removes "
    "the webhook configurations Kyverno leaves behind' >&2; exit 1; }"
)


CRD_CACHE = CRD_DIR.parent / "crds.json"
"""The CRDs parsed once into JSON (about 100x faster to load than the 650 KB of YAML); a test keeps it equal
to :func:`crd_manifests_from_yaml`, regenerate with :func:`write_crd_cache`."""


def crd_manifests() -> tuple[dict[str, Any], ...]:
    """The chart's 22 CRDs, vendored byte-identical from kyverno v1.18.1 (see vendor/kyverno/README.md).

    Parsed on each call (tens of milliseconds), not cached: the parsed schemas are tens of MB of Python
    objects, and a render needs them only while it registers the CRDs."""
    if CRD_CACHE.is_file():
        with CRD_CACHE.open(encoding="utf-8") as fh:
            return tuple(json.load(fh))
    return crd_manifests_from_yaml()


def write_crd_cache() -> pathlib.Path:
    """Write :data:`CRD_CACHE` from the vendored YAML: ``python -c 'from components import kyverno; kyverno.write_crd_cache()'``."""
    CRD_CACHE.write_text(json.dumps(list(crd_manifests_from_yaml()), separators=(",", ":")) + "\n", encoding="utf-8")
    return CRD_CACHE


def crd_manifests_from_yaml() -> tuple[dict[str, Any], ...]:
    """The vendored CRD YAML files, parsed (``status`` dropped: it is the API server's)."""
    out = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            for doc in yaml_io.load_all(fh):
                if doc:
                    doc.pop("status", None)
                    out.append(doc)
    if not out:
        raise FileNotFoundError(f"no Kyverno CRDs under {CRD_DIR}")
    return tuple(out)


def policy_manifests(config: KyvernoConfig, platform_namespaces: Sequence[str] = DEFAULT_PROTECTED_NAMESPACES
                     ) -> list[dict[str, Any]]:
    """The platform's ClusterPolicies for this stack (SR2), each waiting for Kyverno's Ready."""
    return [with_ready_wait(sr2_policy(config, platform_namespaces))]


def sr2_policy(config: KyvernoConfig, platform_namespaces: Sequence[str] = DEFAULT_PROTECTED_NAMESPACES
               ) -> dict[str, Any]:
    """SR2 for this stack: the policy file with the stack's parameters (components/policy_model.py), never a
    call to its generator: accelerators, trusted controllers and Kueue frameworks (CEL variables), the
    webhook's matchConditions, the failure action.

    SR2 is scoped by the namespace label llm-platform/kueue-managed=true (the rule's namespaceSelector), so
    a namespace labelled by hand is covered too; ``platform_namespaces`` (the stack's protected namespaces)
    are never in scope (the rule's exclude) and stay off the webhook's path (docs/decisions/0002-sr2-kueue-bypasses.md).
    """
    return policy_model.apply(
        policy_model.load_policy(kueue_policy.POLICY_NAME),
        params=kueue_policy.parameters(config),
        match_conditions=kueue_policy.match_conditions(config, platform_namespaces),
        exclude=list(platform_namespaces),
        failure_action=config.failure_action,
    )


def with_ready_wait(policy: dict[str, Any]) -> dict[str, Any]:
    """Make `pulumi up` wait until Kyverno reports the policy Ready (and fail if it never does)."""
    policy = copy.deepcopy(policy)
    annotations = policy["metadata"].setdefault("annotations", {})
    annotations.update(POLICY_READY_ANNOTATIONS)
    return policy


SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"


def skip_policy_await(args: pulumi.ResourceTransformationArgs) -> Optional[pulumi.ResourceTransformationResult]:
    """A transformation (``kyverno.install.skipAwait``, make e2e only) that adds ``pulumi.com/skipAwait: "true"``
    to every object that waits for ``condition=Ready``: the provider then waits for nothing (skipAwait wins over
    waitFor, pulumi-kubernetes ``metadata.ReadyCondition``), since no Kyverno pod runs to make a policy Ready."""
    metadata = args.props.get("metadata")
    if not isinstance(metadata, dict) or POLICY_READY_ANNOTATIONS["pulumi.com/waitFor"] != (
        (metadata.get("annotations") or {}).get("pulumi.com/waitFor")
    ):
        return None
    metadata = {**metadata, "annotations": {**metadata["annotations"], SKIP_AWAIT_ANNOTATION: "true"}}
    return pulumi.ResourceTransformationResult({**args.props, "metadata": metadata}, args.opts)


# Set Enforce/Audit wherever the policy declares it (the policy model's setter, under its older name).
with_failure_action = policy_model.set_failure_action


def helm_values(config: KyvernoConfig, policy_exceptions: bool = False) -> dict[str, Any]:
    """Chart values; every key exists in the chart's values.yaml (tests check it)."""
    values = _helm_values(config)
    if config.install.skip_await:
        # No pod runs (make e2e): the chart's hook Jobs would never complete, and Helm waits for them.
        values["webhooksCleanup"] = {"enabled": False}
        values["crds"]["migration"] = {"enabled": False}
    if policy_exceptions:
        # The guardrail catalog's PolicyExceptions; only honoured in the kyverno namespace, so
        # whoever may write there (not tenants) decides the exceptions.
        values["features"] = {"policyExceptions": {"enabled": True, "namespace": NAMESPACE}}
    return values


def _helm_values(config: KyvernoConfig) -> dict[str, Any]:
    replicas = config.admission_replicas
    component = {"app.kubernetes.io/component": "admission-controller", "app.kubernetes.io/instance": "kyverno"}
    small = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    return {
        # CRDs are separate Pulumi resources applied server-side before the release.
        "crds": {"install": False},
        # The chart would let every namespace `admin` write Kyverno Policies (and namespaced generating
        # policies): the background controller, which may write NetworkPolicies everywhere, would then
        # generate a tenant's extra NetworkPolicy past restrict-network-policy-writes. Read access stays.
        "rbac": {"roles": {"aggregate": {"admin": False, "view": True}}},
        "config": {
            "webhooks": {
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": ["kube-system", NAMESPACE],
                        }
                    ]
                }
            },
            "excludeKyvernoNamespace": True,
        },
        "admissionController": {
            "replicas": replicas,
            "podDisruptionBudget": {"enabled": replicas > 1, "minAvailable": max(1, replicas - 1)},
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    # Soft: a zone outage must not keep a replacement replica from scheduling.
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": component},
                }
            ],
            "container": {
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "768Mi"}}
            },
        },
        "backgroundController": {"resources": small},
        "cleanupController": {"resources": small},
        "reportsController": {"resources": small},
    }


@dataclass
class KyvernoArgs:
    """Inputs of :class:`Kyverno`."""

    config: KyvernoConfig
    """Validated SR2 settings (failure action, replicas)."""
    access: ClusterAccess = field(default_factory=ClusterAccess)
    """How the destroy-time webhook cleanup reaches the cluster."""
    extra_depends_on: list[pulumi.Resource] = field(default_factory=list)
    """Resources the engine must wait for (e.g. node pools, the webhook firewall rule)."""
    policy_exceptions: bool = False
    """Enable Kyverno PolicyExceptions (namespace kyverno); the guardrail catalog uses them."""
    platform_namespaces: Sequence[str] = DEFAULT_PROTECTED_NAMESPACES
    """The platform's own model-serving namespaces (`networkPolicy.protectedNamespaces`): never in SR2's scope,
    and kept off its webhook path. SR2's scope is the namespace label, not tenant names."""


class Kyverno(pulumi.ComponentResource):
    """Kyverno v1.18.1 with CRDs applied server-side and the platform's ClusterPolicies."""

    def __init__(self, name: str, args: KyvernoArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:security:Kyverno", name, None, opts)

        env: dict[str, pulumi.Input[str]] = {}
        if args.access.kubeconfig is not None:
            env["KUBECONFIG_CONTENT"] = args.access.kubeconfig
        if args.access.kubeconfig_path:
            env["KUBECONFIG"] = args.access.kubeconfig_path
        if args.access.context:
            env["KUBE_CONTEXT"] = args.access.context

        install = args.config.install
        # Refuse (with a message) a cluster that already runs another Kyverno.
        # (Without kubectl commands -- make e2e, no pulumi-command provider -- neither this nor the cleanup exists.)
        self.preflight: Optional[command.local.Command] = None
        if install.kubectl_commands:
            self.preflight = command.local.Command(
                "kyverno-preflight",
                create=FOREIGN_KYVERNO_PREFLIGHT,
                environment=env,
                interpreter=["/bin/sh", "-c"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.extra_depends_on),
            )
        commands: list[pulumi.Resource] = [self.preflight] if self.preflight else []

        self.namespace = k8s.core.v1.Namespace(
            NAMESPACE,
            metadata={
                "name": NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "llm-platform", "app.kubernetes.io/part-of": "kyverno"},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.extra_depends_on, *commands]),
        )

        # Two of these are ~1.4 MB: only server-side apply (the provider's mode) can store them.
        self.crds = [
            k8s.apiextensions.v1.CustomResourceDefinition(
                crd["metadata"]["name"],
                metadata=crd["metadata"],
                spec=crd["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
            )
            for crd in crd_manifests()
        ]

        # Created before the release, therefore deleted after it: removes the validating webhook
        # configurations Kyverno's own pre-delete hook leaves behind.
        self.webhook_cleanup: Optional[command.local.Command] = None
        if install.kubectl_commands:
            self.webhook_cleanup = command.local.Command(
                "kyverno-webhook-cleanup",
                create=CLEANUP_PREFLIGHT,
                delete=CLEANUP_SCRIPT,
                environment=env,
                interpreter=["/bin/sh", "-c"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=self.crds),
            )
        cleanup: list[pulumi.Resource] = [self.webhook_cleanup] if self.webhook_cleanup else []

        self.release = k8s.helm.v3.Release(
            "kyverno",
            name="kyverno",
            # A local chart directory (make e2e) or the chart repository's package.
            chart=install.chart_path or CHART,
            version=None if install.chart_path else CHART_VERSION,
            repository_opts=None if install.chart_path else k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=NAMESPACE,
            create_namespace=False,
            skip_crds=True,
            values=helm_values(args.config, args.policy_exceptions),
            # Helm --wait: the release is ready only when the admission controller is (make e2e: no pod runs).
            skip_await=install.skip_await,
            timeout=600,
            cleanup_on_fail=True,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.namespace, *self.crds, *cleanup]
            ),
        )

        self.policies = [
            k8s.apiextensions.CustomResource(
                policy["metadata"]["name"],
                api_version=policy["apiVersion"],
                kind=policy["kind"],
                metadata=policy["metadata"],
                spec=policy["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
            )
            for policy in policy_manifests(args.config, args.platform_namespaces)
        ]

        self.register_outputs(
            {
                "chartVersion": CHART_VERSION,
                "crds": len(self.crds),
                "policies": [p["metadata"]["name"] for p in policy_manifests(args.config, args.platform_namespaces)],
                "failureAction": args.config.failure_action,
            }
        )
