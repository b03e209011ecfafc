"""`make e2e` pod-security: tools/pod_security.py against the real API server's PodSecurity admission.

Every case of tests/test_pod_security.py (its objects, built with the same helpers) is sent as a server-side
dry-run create (``dryRun=All``) into namespaces labelled for each level and version the checker implements and
the tests use, plus an unlabelled one; ephemeral containers go through the ``pods/ephemeralcontainers``
subresource of a real pod, the only way the API server takes them. For each (case, namespace) the checker's
:func:`tools.pod_security.admit` with the namespace's labels must agree with the API server: allowed or
refused, and the same check reasons in the refusal (enforce) and in the warning (warn).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Optional

from tools import pod_security
from tools.e2e_kube import Kube, psa_reasons

PSA = pod_security.LABEL_PREFIX
LEVELS = ("baseline", "restricted")
VERSIONS = ("v1.30", "v1.31", "v1.33", "v1.34")
"""Versions the tests evaluate (v1.30/v1.31: SELinux and sysctl changes, v1.33: the pinned one, v1.34: probes)."""
NAMESPACE_PREFIX = "e2e-psa-"


@dataclass
class Case:
    name: str
    obj: dict[str, Any]
    ephemeral: bool = False
    """Send the pod's ephemeralContainers through the subresource of a real pod (a create refuses them)."""


def _pod(name: str, spec_extra: Optional[dict] = None, container_extra: Optional[dict] = None,
         pod_sc: Optional[dict] = None) -> dict[str, Any]:
    return pod_security.restricted_pod(name, "NS", spec_extra, container_extra, pod_sc)


def _sc(**extra: Any) -> dict[str, Any]:
    return {"securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, **extra}}


def _workload(kind: str, pod: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(pod["spec"])
    if kind == "Deployment":
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "NS"},
                "spec": {"selector": {"matchLabels": {"app": "d"}},
                         "template": {"metadata": {"labels": {"app": "d"}}, "spec": spec}}}
    spec["restartPolicy"] = "Never"
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "NS"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": spec}}}}}


def cases() -> list[Case]:
    """The objects of tests/test_pod_security.py, one case each."""
    out = [Case(f"escape-{name}", obj) for name, (obj, _) in sorted(pod_security.node_escape_pods("NS").items())]
    out.append(Case("plain", _pod("plain")))
    init = _pod("sneaky-init")
    init["spec"]["initContainers"] = [{"name": "helper", "image": "busybox", "securityContext": {"privileged": True}}]
    out.append(Case("privileged-initContainer", init))
    eph = _pod("sneaky-ephemeral")
    eph["spec"]["ephemeralContainers"] = [{"name": "helper", "image": "busybox", "securityContext": {"privileged": True}}]
    out.append(Case("privileged-ephemeralContainer", eph, ephemeral=True))
    out.append(Case("hostIPC", _pod("ipc", spec_extra={"hostIPC": True})))
    out.append(Case("hostPort", _pod("port", container_extra={"ports": [{"containerPort": 8000, "hostPort": 8000}]})))
    out.append(Case("deployment-host-network", _workload("Deployment", pod_security.node_escape_pods("NS")["host-network"][0])))
    out.append(Case("cronjob-privileged", _workload("CronJob", pod_security.node_escape_pods("NS")["privileged"][0])))
    rd = {"type": "RuntimeDefault"}
    out += [
        Case("runAsNonRoot-container-false", _pod("rnr-false", container_extra=_sc(runAsNonRoot=False))),
        Case("runAsNonRoot-unset", _pod("rnr-unset", pod_sc={"seccompProfile": rd})),
        Case("runAsNonRoot-every-container", _pod("rnr-each", pod_sc={"seccompProfile": rd}, container_extra=_sc(runAsNonRoot=True))),
        Case("runAsUser-0", _pod("root", pod_sc={"runAsNonRoot": True, "runAsUser": 0, "seccompProfile": rd})),
        Case("seccomp-unconfined", _pod("unconfined", container_extra=_sc(seccompProfile={"type": "Unconfined"}))),
        Case("seccomp-missing", _pod("no-seccomp", pod_sc={"runAsNonRoot": True})),
    ]

    def caps(name: str, c: dict[str, Any]) -> Case:
        return Case(f"capabilities-{name}", _pod(f"caps-{name.lower().replace('_', '-')}", container_extra={
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": c}}))

    out += [caps("drop-all-add-CHOWN", {"drop": ["ALL"], "add": ["CHOWN"]}), caps("add-NET_RAW", {"add": ["NET_RAW"]}),
            caps("add-SYS_ADMIN", {"add": ["SYS_ADMIN"]}),
            caps("drop-all-add-NET_BIND_SERVICE", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
            caps("drop-NET_RAW", {"drop": ["NET_RAW"]})]
    out.append(Case("allowPrivilegeEscalation-unset", _pod("ape", container_extra={"securityContext": {"capabilities": {"drop": ["ALL"]}}})))
    volumes: dict[str, dict[str, Any]] = {"nfs": {"nfs": {"server": "nfs.example", "path": "/"}}, "emptyDir": {"emptyDir": {}},
               "persistentVolumeClaim": {"persistentVolumeClaim": {"claimName": "c"}}, "image": {"image": {"reference": "r"}},
               "projected": {"projected": {"sources": []}}, "csi": {"csi": {"driver": "d"}},
               "hostPath": {"hostPath": {"path": "/var/lib/nvidia"}}}
    out += [Case(f"volume-{k}", _pod(f"vol-{k.lower()}", spec_extra={"volumes": [{"name": "v", **v}]})) for k, v in volumes.items()]
    base_sc = {"runAsNonRoot": True, "seccompProfile": rd}
    out.append(Case("sysctl-tcp_rmem", _pod("sysctl-rmem", pod_sc={**base_sc, "sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"}]})))
    out.append(Case("sysctl-kernel.msgmax", _pod("sysctl-msgmax", pod_sc={"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]})))
    out.append(Case("seLinux-container_engine_t", _pod("se-engine", pod_sc={**base_sc, "seLinuxOptions": {"type": "container_engine_t"}})))
    out.append(Case("seLinux-user", _pod("se-user", pod_sc={"seLinuxOptions": {"user": "system_u"}})))
    out.append(Case("appArmor-field-unconfined", _pod("aa-field", pod_sc={"appArmorProfile": {"type": "Unconfined"}})))
    annotated = _pod("aa-annotation")
    annotated["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}
    out.append(Case("appArmor-annotation-unconfined", annotated))
    out.append(Case("procMount-unmasked-hostUsers-false", _pod("procmount", spec_extra={"hostUsers": False},
                                                               container_extra=_sc(procMount="Unmasked"))))
    out.append(Case("probe-host", _pod("probe-host", container_extra={
        "livenessProbe": {"httpGet": {"host": "10.0.0.7", "port": 8000, "path": "/health"}}})))
    out.append(Case("windows-pod", _pod("windows", spec_extra={"os": {"name": "windows"}}, pod_sc={"runAsNonRoot": True},
                                        container_extra={"securityContext": {}})))
    out.append(Case("linux-pod-empty-securityContext", _pod("linux", spec_extra={"os": {"name": "linux"}}, pod_sc={"runAsNonRoot": True},
                                                            container_extra={"securityContext": {}})))
    return out


MISSING_RUNTIME_CLASS = "e2e-no-such-runtime-class"
"""A RuntimeClass nobody creates: the RuntimeClass admission plugin refuses a pod naming it."""


def agent_cases(runtime_class: str) -> list[tuple[Case, bool]]:
    """Agent pods (RuntimeClass ``runtime_class``, as agent-runtime-isolation requires) and whether the API
    server must admit them in an agent namespace at ``restricted``: the node escapes and root refused, the
    restricted-compliant agent admitted."""

    def agent(name: str, pod: dict[str, Any]) -> Case:
        pod = copy.deepcopy(pod)
        pod["metadata"]["name"] = f"agent-{name.lower()}"
        pod["spec"]["runtimeClassName"] = runtime_class
        return Case(f"agent-{name}", pod)

    escapes = pod_security.node_escape_pods("NS")
    rd = {"type": "RuntimeDefault"}
    return [
        (agent("host-network", escapes["host-network"][0]), False),
        (agent("privileged", escapes["privileged"][0]), False),
        (agent("root", _pod("root", pod_sc={"runAsUser": 0, "seccompProfile": rd})), False),
        (agent("root-runAsNonRoot-false", _pod("root", pod_sc={"runAsNonRoot": False, "seccompProfile": rd})), False),
        (agent("restricted", _pod("restricted")), True),
    ]


def grid() -> dict[str, dict[str, str]]:
    """Namespace name -> Pod Security labels: each level at each version (enforce = warn), and none at all."""
    out: dict[str, dict[str, str]] = {f"{NAMESPACE_PREFIX}unlabelled": {}}
    for level in LEVELS:
        for version in VERSIONS:
            out[f"{NAMESPACE_PREFIX}{level}-{version.replace('.', '-')}"] = {
                f"{PSA}enforce": level, f"{PSA}enforce-version": version,
                f"{PSA}warn": level, f"{PSA}warn-version": version,
            }
    return out


@dataclass
class Outcome:
    """What the API server did with one case in one namespace."""

    allowed: Optional[bool]
    """None: the request failed for another reason than Pod Security (``detail`` says why)."""
    enforce: set[str]
    warn: set[str]
    detail: str = ""


def observed(r: Any) -> Outcome:
    if r.ok:
        warn: set[str] = set()
        for w in r.warnings:
            warn |= psa_reasons(w) or set()
        return Outcome(True, set(), warn)
    reasons = psa_reasons(r.message) if r.status == 403 else None
    if reasons is None:
        return Outcome(None, set(), set(), f"HTTP {r.status}: {r.message[:300]}")
    return Outcome(False, reasons, set())


def expected(labels: dict[str, str], obj: dict[str, Any]) -> Outcome:
    d = pod_security.admit(labels, obj)

    def reasons(vs: list[pod_security.Violation]) -> set[str]:
        # each detail starts with the upstream check's ForbiddenReason
        return {v.detail.split(": ", 1)[0] for v in vs}

    if not d.allowed:
        return Outcome(False, reasons(d.enforce), set())
    # The API server adds no warning to a request it refuses, and none for a level that passes.
    return Outcome(True, set(), reasons(d.warn))


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    return obj


def send(kube: Kube, case: Case, namespace: str) -> Outcome:
    """Ask the API server about ``case`` in ``namespace`` (nothing is persisted except the base pod of an
    ephemeral-container case, deleted right after)."""
    obj = in_namespace(case.obj, namespace)
    if not case.ephemeral:
        return observed(kube.create(obj, dry_run=True))
    base = copy.deepcopy(obj)
    ephemeral = base["spec"].pop("ephemeralContainers")
    made = kube.create(base)
    if not made.ok:
        return Outcome(None, set(), set(), f"base pod not created: HTTP {made.status}: {made.message[:200]}")
    try:
        live = made.body
        live["spec"]["ephemeralContainers"] = ephemeral
        path = kube.path_of(base, subresource="ephemeralcontainers")
        assert path is not None
        return observed(kube.request("PUT", path, live, query={"dryRun": "All"}))
    finally:
        kube.delete(base, wait=10)


# The one ForbiddenReason upstream words by count (check_appArmorProfile.go: pluralize("forbidden AppArmor profile",
# "forbidden AppArmor profiles", len(badValueList))); both name the check appArmorProfile.
SAME_CHECK = {"forbidden AppArmor profile": "forbidden AppArmor profiles"}


def _checks(reasons: set[str]) -> set[str]:
    return {SAME_CHECK.get(r, r) for r in reasons}


def differences(want: Outcome, got: Outcome) -> str:
    """'' when they agree (the decision, and the checks named in the refusal and in the warning), else what differs."""
    if got.allowed is None:
        return f"not evaluated by the API server ({got.detail}); checker: {_say(want)}"
    if (want.allowed != got.allowed or _checks(want.enforce) != _checks(got.enforce)
            or _checks(want.warn) != _checks(got.warn)):
        return f"checker {_say(want)}; API server {_say(got)}"
    return ""


def wording(want: Outcome, got: Outcome) -> str:
    """'' when the reasons are worded alike, else both wordings (same checks, different text)."""
    if got.allowed is None or (want.enforce == got.enforce and want.warn == got.warn):
        return ""
    return f"checker says {sorted(want.enforce | want.warn)}, API server {sorted(got.enforce | got.warn)}"


def _say(o: Outcome) -> str:
    if o.allowed is False:
        return f"refused ({', '.join(sorted(o.enforce))})"
    return "allowed" + (f" with warnings ({', '.join(sorted(o.warn))})" if o.warn else "")
