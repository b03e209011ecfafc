"""Live checks of SR1 and SR2 on a real cluster: `make verify STACK=<stack>`.

Runs, in order, with the official Kubernetes Python client:
  SR1-a  from a throwaway pod in `default`, a request to a serving Service gets no HTTP answer
  SR1-b  from a throwaway pod in `monitoring`, the same request gets HTTP 200
  SR2-a  in a throwaway namespace labelled llm-platform/kueue-managed=true, a GPU pod without
         kueue.x-k8s.io/queue-name is denied by admission (message names the label)
  SR2-b  the same pod with the label is admitted
  PSA-a..d  in the stack's first tenant namespace, a hostNetwork, privileged, hostPath /dev and
         hostPID pod are each refused by Pod Security Admission (server-side dry run)
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

EXIT_OK, EXIT_FAIL, EXIT_NO_CLUSTER = 0, 1, 3
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MANAGED_LABEL = "llm-platform/kueue-managed"
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


def classify_admission(expect_denied: bool, error: Optional[Any]) -> tuple[str, str]:
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
    return "FAIL", f"a labelled GPU pod was rejected ({status}): {body[:200]}"


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


def gpu_pod(name: str, labelled: bool) -> dict:
    labels = {"app": "llm-platform-verify"}
    if labelled:
        labels[QUEUE_LABEL] = "verify"
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
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        },
    }


def curl_pod(name: str, url: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "llm-platform-verify"}},
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


def run_probe(api, namespace: str, url: str, timeout: float) -> tuple[Optional[int], str]:
    """Run curl in a short-lived pod; return (curl exit code, printed HTTP code)."""
    name = f"llm-platform-verify-{secrets.token_hex(3)}"
    api.create_namespaced_pod(namespace, curl_pod(name, url))
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


def serving_url(api, override: Optional[str]) -> Optional[str]:
    if override:
        return override
    services = api.list_namespaced_service("serving").items
    if not services:
        return None
    svc = services[0]
    port = svc.spec.ports[0].port
    return f"http://{svc.metadata.name}.serving.svc:{port}/health"


def sr1(api, override_url: Optional[str], timeout: float) -> list[Row]:
    url = serving_url(api, override_url)
    if url is None:
        reason = "no Service in namespace serving; pass --serving-url"
        return [Row("SR1-a", "default -> serving times out", "SKIP", reason),
                Row("SR1-b", "monitoring -> serving HTTP 200", "SKIP", reason)]
    rows = []
    status, detail = classify_denied_probe(*run_probe(api, "default", url, timeout))
    rows.append(Row("SR1-a", "default -> serving times out", status, f"{url}: {detail}"))
    status, detail = classify_allowed_probe(*run_probe(api, "monitoring", url, timeout))
    rows.append(Row("SR1-b", "monitoring -> serving HTTP 200", status, f"{url}: {detail}"))
    return rows


def sr2(api) -> list[Row]:
    from kubernetes.client.rest import ApiException

    ns = f"llm-platform-verify-{secrets.token_hex(3)}"
    rows = []
    api.create_namespace({"metadata": {"name": ns, "labels": {MANAGED_LABEL: "true"}}})
    try:
        for check, labelled, description in (
            ("SR2-a", False, "GPU pod without queue label denied"),
            ("SR2-b", True, "GPU pod with queue label admitted"),
        ):
            error = None
            try:
                # Server-side dry run: admission webhooks (Kyverno) still run, nothing is scheduled.
                api.create_namespaced_pod(ns, gpu_pod(f"gpu-{check.lower()}", labelled), dry_run="All")
            except ApiException as err:
                error = err
            status, detail = classify_admission(expect_denied=not labelled, error=error)
            rows.append(Row(check, description, status, detail))
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
    parser.add_argument("--serving-url", help="URL of a model server, e.g. http://vllm.serving.svc:8000/health")
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
    rows = sr1(api, args.serving_url, args.timeout) + sr2(api)
    rows += pod_security(api, stack_tenants(args.stack))
    print(table(rows))
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
