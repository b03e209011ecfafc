"""Live checks of SR1 and SR2 on a real cluster: `make verify STACK=<stack>`.

Runs, in order, with the official Kubernetes Python client:
  SR1-a  the security group's section-3 check: from a throwaway pod in `default`,
         http://embeddings.serving.svc.cluster.local/health gets no HTTP answer (times out)
  SR1-b  the same request from a throwaway pod in `monitoring` carrying a trusted pod's labels (Prometheus':
         SR1 trusts pods of `monitoring`, `networkPolicy.allowedFromPods`) gets HTTP 200
  SR1-c  from `default`, a vLLM Service in `serving` (raw-vllm, coder-*; or --serving-url) gets no answer
  SR1-d  the same vLLM request from `monitoring` (trusted pod's labels) gets HTTP 200
  SR1-h  the embeddings request from a pod in `monitoring` without those labels gets no answer
  SR1-e/f/g  from `default`, the gateway Services in `inference`, `kserve` and `llm-d` get no answer
  A check whose target Service is absent, or has no ready endpoint (a deployment scaled to 0), is
  SKIP and names the flow it could not test: a timeout to nothing proves nothing.
  SR2-a  the reference platform's SR2 steps: a throwaway namespace, labelled by hand afterwards
         (`kubectl label ns <ns> llm-platform/kueue-managed=true`, as a tenant namespace is opted in);
         there a GPU pod without kueue.x-k8s.io/queue-name is denied by admission (message names the label)
  SR2-b  the same pod with the label is admitted (Kueue's pod webhook gates it first)
  SR2-c  a pod without GPU is admitted
  PSA-a..d  in the stack's first tenant namespace, a hostNetwork, privileged, hostPath /dev and
         hostPID pod are each refused by Pod Security Admission (server-side dry run)
  AGENT-a..e  with agent isolation on, in the first agent namespace: a gVisor pod is admitted; a runc,
         token-without-reason, hostPath and privileged pod are each refused (server-side dry run)
  LOG-a  with networkPolicyLogging on, NetworkLogging/default logs what the stack configures
and prints a PASS/FAIL/SKIP table. Exit codes: 0 all passed (skips carry a reason), 1 a check
failed, 3 no reachable cluster (nothing was checked).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from components.platform_facts import KUEUE_MANAGED_LABEL, QUEUE_LABEL

EXIT_OK, EXIT_FAIL, EXIT_NO_CLUSTER = 0, 1, 3
CURL_IMAGE = "curlimages/curl:8.11.1"
CURL_TIMEOUT_EXIT = 28  # curl: operation timed out
CURL_CONNECT_EXIT = 7  # curl: failed to connect


@dataclass
class Row:
    """One line of the result table."""

    check: str
    description: str
    status: str  # PASS | FAIL | SKIP
    detail: str


class NoCluster(Exception):
    """No cluster could be reached; nothing was checked."""


# ------------------------------------------------------------------ pure decisions


def classify_denied_probe(exit_code: Optional[int], http_code: str) -> tuple[str, str]:
    """SR1-a: PASS when the request got no HTTP answer (timeout or refused)."""
    if exit_code in (CURL_TIMEOUT_EXIT, CURL_CONNECT_EXIT) or http_code in ("", "000"):
        return "PASS", f"no HTTP answer (curl exit {exit_code})"
    return "FAIL", f"got HTTP {http_code}: the NetworkPolicy did not block default -> serving"


def classify_allowed_probe(exit_code: Optional[int], http_code: str) -> tuple[str, str]:
    """SR1-b: PASS on HTTP 200."""
    if http_code == "200":
        return "PASS", "HTTP 200"
    return "FAIL", f"expected HTTP 200, got {http_code or 'no answer'} (curl exit {exit_code})"


def classify_admission(expect_denied: bool, error: Optional[Any], what: str = "a labelled GPU pod") -> tuple[str, str]:
    """SR2: `error` is None when the API admitted the pod, else an ApiException-like (status, body)."""
    if error is None:
        return ("FAIL", "admitted: the policy did not deny a GPU pod without the queue label") if expect_denied else (
            "PASS",
            "admitted",
        )
    status = getattr(error, "status", None)
    body = str(getattr(error, "body", "") or error)
    if expect_denied:
        if status in (400, 403) and QUEUE_LABEL in body:
            return "PASS", f"denied ({status}) naming {QUEUE_LABEL}"
        return "FAIL", f"rejected for another reason ({status}): {body[:200]}"
    return "FAIL", f"{what} was rejected ({status}): {body[:200]}"


POD_SECURITY_DENIAL = "violates PodSecurity"


def classify_pod_security(error: Optional[Any]) -> tuple[str, str]:
    """PSA-*: PASS when the API server's PodSecurity admission refused the pod (403, "violates PodSecurity")."""
    if error is None:
        return "FAIL", "admitted: the tenant namespace does not enforce Pod Security baseline"
    status = getattr(error, "status", None)
    body = str(getattr(error, "body", "") or error)
    if status == 403 and POD_SECURITY_DENIAL in body:
        start = body.find(POD_SECURITY_DENIAL)
        return "PASS", f"denied (403): {body[start:start + 120]}"
    return "FAIL", f"rejected, but not by Pod Security ({status}): {body[:200]}"


def table(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows + [Row("check", "description", "result", "detail")]) for f in ("check", "description", "status")]
    header = Row("check", "description", "result", "detail")
    lines = []
    for i, r in enumerate([header] + rows):
        lines.append(f"{r.check.ljust(widths[0])}  {r.description.ljust(widths[1])}  {r.status.ljust(widths[2])}  {r.detail}")
        if i == 0:
            lines.append("-" * (sum(widths) + 6 + 6))
    return "\n".join(lines)


def exit_code(rows: list[Row]) -> int:
    return EXIT_FAIL if any(r.status == "FAIL" for r in rows) else EXIT_OK


# ------------------------------------------------------------------ cluster calls


def gpu_pod(name: str, labelled: bool, gpus: int = 1) -> dict:
    labels = {"app": "llm-platform-verify"}
    if labelled:
        labels[QUEUE_LABEL] = "verify"
    resources = {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "gpu",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": resources,
                }
            ],
        },
    }


def curl_pod(name: str, url: str, labels: Optional[dict[str, str]] = None) -> dict:
    """A curl probe; ``labels`` (a trusted pod's) are added to its own: it declares no port, so no Service
    selecting those labels routes to it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "llm-platform-verify", **(labels or {})}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "curl",
                    "image": CURL_IMAGE,
                    "command": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def connect(kubeconfig: Optional[str], context: Optional[str], timeout: float):
    """Return a CoreV1Api for a reachable cluster, or raise NoCluster with the reason."""
    import os

    from kubernetes import client, config

    try:
        if kubeconfig and not os.path.exists(kubeconfig):
            raise NoCluster(f"kubeconfig {kubeconfig} does not exist")
        try:
            config.load_kube_config(config_file=kubeconfig, context=context)
        except config.ConfigException as err:
            if kubeconfig or context:
                raise NoCluster(str(err)) from err
            config.load_incluster_config()
        api = client.CoreV1Api()
        client.VersionApi().get_code(_request_timeout=timeout)
        return api
    except NoCluster:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to reach the API means "no cluster"
        raise NoCluster(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err


def run_probe(
    api, namespace: str, url: str, timeout: float, labels: Optional[dict[str, str]] = None
) -> tuple[Optional[int], str]:
    """Run curl in a short-lived pod (with ``labels``); return (curl exit code, printed HTTP code)."""
    name = f"llm-platform-verify-{secrets.token_hex(3)}"
    api.create_namespaced_pod(namespace, curl_pod(name, url, labels))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pod = api.read_namespaced_pod(name, namespace)
            if pod.status.phase in ("Succeeded", "Failed"):
                state = pod.status.container_statuses[0].state.terminated
                log = api.read_namespaced_pod_log(name, namespace)
                return (state.exit_code if state else None), log.strip()
            time.sleep(2)
        return None, ""
    finally:
        api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)


@dataclass(frozen=True)
class Probe:
    """One live SR1 flow: a curl from a pod in ``source`` to the first present Service of ``services``."""

    check: str
    source: str
    """Namespace the probe pod runs in."""
    namespace: str
    """Namespace of the target Service."""
    services: tuple[str, ...]
    """Candidate Service names, first present one wins."""
    path: str
    allowed: bool
    """True: HTTP 200 expected; False: no HTTP answer expected."""
    trusted_pod: Optional[bool] = None
    """True: the probe pod carries the labels of a trusted pod of ``source`` (SR1 trusts pods, not
    namespaces); False: it carries none (another pod of that namespace); None: labels do not matter."""

    @property
    def description(self) -> str:
        what = "/".join(self.services)
        verb = "HTTP 200" if self.allowed else "times out"
        who = {True: " (trusted pod)", False: " (other pod)", None: ""}[self.trusted_pod]
        return f"{self.source}{who} -> {what}.{self.namespace} {verb}"


VLLM_SERVICES = ("raw-vllm", "coder-chat", "coder-fim", "coder-agent")
SR1_PROBES = (
    # The security group's operating notes, section 3, as written.
    Probe("SR1-a", "default", "serving", ("embeddings",), "/health", allowed=False),
    # `monitoring` is trusted by pod (Prometheus): the probe carries a trusted pod's labels.
    Probe("SR1-b", "monitoring", "serving", ("embeddings",), "/health", allowed=True, trusted_pod=True),
    Probe("SR1-c", "default", "serving", VLLM_SERVICES, "/health", allowed=False),
    Probe("SR1-d", "monitoring", "serving", VLLM_SERVICES, "/health", allowed=True, trusted_pod=True),
    # Tenants must not reach any gateway in front of model servers (they go through LiteLLM).
    Probe("SR1-e", "default", "inference", ("inference-gateway",), "/", allowed=False),
    Probe("SR1-f", "default", "kserve", ("kserve-ingress-gateway",), "/", allowed=False),
    Probe("SR1-g", "default", "llm-d", ("llm-d-gateway",), "/", allowed=False),
    # The rest of a trusted namespace (Grafana, the OTLP collector: tenants reach both) is not trusted.
    Probe("SR1-h", "monitoring", "serving", ("embeddings",), "/health", allowed=False, trusted_pod=False),
)


def service_url(name: str, namespace: str, port: int, path: str) -> str:
    host = f"{name}.{namespace}.svc.cluster.local"
    return f"http://{host}{path}" if port == 80 else f"http://{host}:{port}{path}"


def _ready_addresses(api, name: str, namespace: str) -> int:
    from kubernetes.client.rest import ApiException

    try:
        ep = api.read_namespaced_endpoints(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return 0
        raise
    return sum(len(s.addresses or []) for s in (ep.subsets or []))


def resolve_target(api, probe: Probe) -> tuple[Optional[str], str]:
    """(URL, "") for the first candidate Service with a ready endpoint, else (None, why not tested)."""
    present = {s.metadata.name: s for s in api.list_namespaced_service(probe.namespace).items}
    found = [name for name in probe.services if name in present]
    if not found:
        return None, (
            f"not tested: target absent (no Service {'/'.join(probe.services)} in namespace {probe.namespace})"
        )
    for name in found:
        if _ready_addresses(api, name, probe.namespace):
            port = present[name].spec.ports[0].port
            return service_url(name, probe.namespace, port, probe.path), ""
    return None, (
        f"not tested: Service {'/'.join(found)} in {probe.namespace} has no ready endpoint "
        "(scaled to 0?); a timeout would prove nothing"
    )


def probe_labels(probe: Probe, trusted_pods: dict[str, list[dict[str, str]]]) -> tuple[Optional[dict[str, str]], str]:
    """(labels for the probe pod, "") or (None, why not tested): a trusted pod's labels for ``trusted_pod``."""
    if not probe.trusted_pod:
        return {}, ""
    selectors = trusted_pods.get(probe.source)
    if not selectors:
        return None, f"not tested: {probe.source} is not in networkPolicy.allowedFrom, so none of its pods is trusted"
    return dict(selectors[0]), ""


def sr1(
    api,
    override_url: Optional[str],
    timeout: float,
    run=None,
    trusted_pods: Optional[dict[str, list[dict[str, str]]]] = None,
) -> list[Row]:
    """Run every SR1 probe whose target exists; SKIP (naming the flow) those whose target is absent.

    ``override_url`` (``--serving-url``) replaces the vLLM target of SR1-c/SR1-d. ``trusted_pods``: the
    stack's ``NetworkPolicyConfig.trusted_pods`` (default: the platform's), whose labels a trusted-pod
    probe carries.
    """
    run = run or run_probe
    if trusted_pods is None:
        from components.config import NetworkPolicyConfig

        trusted_pods = NetworkPolicyConfig().trusted_pods
    rows = []
    url: Optional[str]
    for probe in SR1_PROBES:
        labels, why = probe_labels(probe, trusted_pods)
        if labels is None:
            rows.append(Row(probe.check, probe.description, "SKIP", why))
            continue
        if override_url and probe.services == VLLM_SERVICES:
            url, why = override_url, ""
        else:
            url, why = resolve_target(api, probe)
        if url is None:
            rows.append(Row(probe.check, probe.description, "SKIP", why))
            continue
        classify = classify_allowed_probe if probe.allowed else classify_denied_probe
        status, detail = classify(*run(api, probe.source, url, timeout, labels))
        shown = f" (as {', '.join(f'{k}={v}' for k, v in labels.items())})" if labels else ""
        rows.append(Row(probe.check, probe.description, status, f"{url}{shown}: {detail}"))
    return rows


def untested(rows: list[Row]) -> list[str]:
    """The flows the live run could not test, for the closing summary."""
    return [f"{r.check} {r.description}: {r.detail}" for r in rows if r.status == "SKIP"]


# SR2's live steps, as the reference platform validates SR2 (platform/security/README.md): label a namespace
# by hand, then a GPU pod without the queue label is denied, the same pod with it and a non-GPU pod admitted.
SR2_CHECKS = (
    # check, description, labelled, GPUs, expect denied
    ("SR2-a", "GPU pod without queue label denied", False, 1, True),
    ("SR2-b", "GPU pod with queue label admitted", True, 1, False),
    ("SR2-c", "pod without GPU admitted", False, 0, False),
)
# Kyverno reads namespace labels from its informer cache: a label set a moment ago may take a few seconds.
SR2_LABEL_SETTLE_SECONDS = 20.0


def sr2(api, sleep: Callable[[float], None] = time.sleep, settle: float = SR2_LABEL_SETTLE_SECONDS) -> list[Row]:
    from kubernetes.client.rest import ApiException

    # Any name: the policy is scoped by the label alone (no name is special-cased).
    ns = f"sr2-check-{secrets.token_hex(3)}"
    rows = []
    api.create_namespace({"metadata": {"name": ns}})
    try:
        # kubectl label ns <ns> llm-platform/kueue-managed=true
        api.patch_namespace(ns, {"metadata": {"labels": {KUEUE_MANAGED_LABEL: "true"}}})
        for check, description, labelled, gpus, expect_denied in SR2_CHECKS:
            waited = 0.0
            while True:
                error = None
                try:
                    # Server-side dry run: admission webhooks (Kueue, Kyverno) still run, nothing is scheduled.
                    api.create_namespaced_pod(ns, gpu_pod(f"gpu-{check.lower()}", labelled, gpus), dry_run="All")
                except ApiException as err:
                    error = err
                if not (expect_denied and error is None and waited < settle):
                    break
                sleep(2.0)
                waited += 2.0
            what = "a labelled GPU pod" if gpus else "a pod without GPU"
            status, detail = classify_admission(expect_denied=expect_denied, error=error, what=what)
            if waited and status == "PASS":
                detail += f" (after {waited:.0f}s: the namespace label reached Kyverno)"
            rows.append(Row(check, f"{description} in {ns} (labelled by hand)", status, detail))
    finally:
        api.delete_namespace(ns)
    return rows


def pod_security(api, tenants: list[str]) -> list[Row]:
    """PSA-a..d: the node escapes are refused in a real tenant namespace (dry run: nothing is created)."""
    from kubernetes.client.rest import ApiException

    from tools.pod_security import LABEL_PREFIX, node_escape_pods

    ids = {"host-network": "PSA-a", "privileged": "PSA-b", "hostpath-dev": "PSA-c", "host-pid": "PSA-d"}
    if not tenants:
        return [Row("PSA", "node escapes refused in a tenant namespace", "SKIP", "the stack has no tenants")]
    ns = tenants[0]
    labels = (api.read_namespace(ns).metadata.labels or {})
    level = labels.get(f"{LABEL_PREFIX}enforce")
    if level not in ("baseline", "restricted"):
        return [Row("PSA", f"{ns} enforces Pod Security", "FAIL", f"label {LABEL_PREFIX}enforce is {level!r}")]
    rows = []
    for case, (pod, _check) in node_escape_pods(ns).items():
        error = None
        try:
            # Server-side dry run: PodSecurity (built into the API server) evaluates it, nothing is created.
            api.create_namespaced_pod(ns, pod, dry_run="All")
        except ApiException as err:
            error = err
        status, detail = classify_pod_security(error)
        rows.append(Row(ids[case], f"{case} pod refused in {ns} ({level})", status, detail))
    return rows


# ------------------------------------------------------------------ agent isolation (opt-in)

AGENT_CASES: dict[str, tuple[str, dict[str, Any], Optional[str]]] = {
    # check: (description, pod spec changes, word the denial must name; None = must be admitted)
    "AGENT-a": ("sandboxed agent pod admitted", {}, None),
    "AGENT-b": ("runc agent pod refused", {"runtimeClassName": None}, "gvisor"),
    "AGENT-c": ("agent pod with a token and no reason refused", {"automountServiceAccountToken": True},
                "llm-platform/service-account-token-reason"),
    "AGENT-d": ("agent pod with hostPath refused", {"volumes": [{"name": "h", "hostPath": {"path": "/var/run"}}]}, "hostPath"),
    "AGENT-e": ("privileged agent pod refused", {"privileged": True}, "privileged"),
}


def agent_pod(name: str, change: dict) -> dict:
    """A pod that passes agent-runtime-isolation, with one violation from ``change``."""
    container: dict = {"name": "agent", "image": "registry.k8s.io/pause:3.10"}
    spec: dict = {"restartPolicy": "Never", "automountServiceAccountToken": False, "runtimeClassName": "gvisor",
                  "containers": [container]}
    for key, value in change.items():
        if key == "privileged":
            container["securityContext"] = {"privileged": True}
        elif value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "llm-platform-verify"}},
            "spec": spec}


def classify_agent(word: Optional[str], error: Optional[Any], failure_action: str) -> tuple[str, str]:
    """AGENT-*: refusals must name the rule's subject; in Audit mode Kyverno reports instead of refusing."""
    status = getattr(error, "status", None)
    body = str(getattr(error, "body", "") or error) if error is not None else ""
    if word is None:
        return ("PASS", "admitted (RuntimeClass gvisor exists)") if error is None else (
            "FAIL", f"a compliant agent pod was rejected ({status}): {body[:200]}")
    if failure_action == "Audit":
        return "SKIP", "kyverno.failureAction is Audit: violations are reported (PolicyReports), not refused"
    if error is None:
        return "FAIL", "admitted: agent-runtime-isolation did not refuse it"
    if status in (400, 403) and "agent-runtime-isolation" in body and word in body:
        return "PASS", f"denied ({status}) naming {word}"
    return "FAIL", f"rejected for another reason ({status}): {body[:200]}"


def agent_isolation(api, settings) -> list[Row]:
    """AGENT-a..e in the first agent namespace (server-side dry runs); nothing when agent isolation is off."""
    from kubernetes.client.rest import ApiException

    if settings is None or not (settings.security and settings.agent_isolation.enabled):
        return []
    ns = settings.agent_isolation.namespaces[0]
    rows = []
    for check, (description, change, word) in AGENT_CASES.items():
        error = None
        try:
            api.create_namespaced_pod(ns, agent_pod(check.lower(), change), dry_run="All")
        except ApiException as err:
            error = err
        status, detail = classify_agent(word, error, settings.kyverno.failure_action)
        rows.append(Row(check, f"{description} in {ns}", status, detail))
    return rows


def classify_network_logging(obj: Optional[dict], denied: bool, allowed: bool) -> tuple[str, str]:
    """LOG-a: the cluster's NetworkLogging/default logs what the stack configured."""
    if obj is None:
        return "FAIL", "NetworkLogging/default not found (is this a Dataplane V2 cluster?)"
    cluster = (obj.get("spec") or {}).get("cluster") or {}
    got = (bool((cluster.get("deny") or {}).get("log")), bool((cluster.get("allow") or {}).get("log")))
    if got[0] == denied and got[1] == allowed:
        return "PASS", f"deny.log={got[0]}, allow.log={got[1]}"
    return "FAIL", f"deny.log={got[0]}, allow.log={got[1]}; the stack configures denied={denied}, allowed={allowed}"


def network_logging(settings, custom_api=None) -> list[Row]:
    """LOG-a, only with networkPolicyLogging on: reads NetworkLogging/default from the cluster."""
    if settings is None or not settings.network_policy_logging.enabled:
        return []
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = custom_api or client.CustomObjectsApi()
    try:
        obj = api.get_cluster_custom_object("networking.gke.io", "v1alpha1", "networkloggings", "default")
    except ApiException as err:
        if err.status != 404:
            return [Row("LOG-a", "NetworkLogging/default as configured", "FAIL", f"cannot read it ({err.status})")]
        obj = None
    cfg = settings.network_policy_logging
    status, detail = classify_network_logging(obj, cfg.denied, cfg.allowed)
    return [Row("LOG-a", "NetworkLogging/default as configured", status, detail)]


def stack_settings(stack: str):
    """The stack's validated settings (None when there is no such stack file)."""
    from components.config import parse
    from tools.mockrun import stack_config

    try:
        return parse(stack_config(stack), stack)
    except FileNotFoundError:
        return None


def stack_tenants(stack: str) -> list[str]:
    """The stack's tenant namespaces from Pulumi.<stack>.yaml ([] when there is no such file)."""
    from components.config import parse
    from tools.mockrun import stack_config

    try:
        return list(parse(stack_config(stack), stack).tenants)
    except FileNotFoundError:
        return []


def main(argv: Optional[list[str]] = None, checks: Optional[list[Callable]] = None) -> int:
    parser = argparse.ArgumentParser(description="Live SR1/SR2 checks on the stack's cluster.")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--kubeconfig")
    parser.add_argument("--context")
    parser.add_argument("--serving-url", help="URL of a vLLM server for SR1-c/d, e.g. http://raw-vllm.serving.svc:8000/health")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per probe pod")
    args = parser.parse_args(argv)
    try:
        api = connect(args.kubeconfig, args.context, timeout=10)
    except NoCluster as err:
        print(
            f"SKIP: no reachable cluster for stack {args.stack} ({err}); point --kubeconfig/--context at the "
            "stack's cluster (e.g. pulumi stack output kubeconfig --show-secrets > kubeconfig)"
        )
        return EXIT_NO_CLUSTER
    settings = stack_settings(args.stack)
    trusted = settings.network_policy.trusted_pods if settings is not None else None
    rows = sr1(api, args.serving_url, args.timeout, trusted_pods=trusted) + sr2(api)
    rows += pod_security(api, stack_tenants(args.stack))
    rows += agent_isolation(api, settings)
    rows += network_logging(settings)
    print(table(rows))
    skipped = untested(rows)
    if skipped:
        print("\nFlows not tested on this cluster:")
        for line in skipped:
            print(f"  - {line}")
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
