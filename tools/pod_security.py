"""Offline Pod Security Standards checker (baseline and restricted), versioned like Pod Security Admission.

What tenant namespaces enforce is the built-in PodSecurity admission plugin of the API server; this
module reproduces its checks so the project can prove offline which workloads a level admits.

Sources, read check by check:

* the standard: https://v1-33.docs.kubernetes.io/docs/concepts/security/pod-security-standards/
  (Kubernetes v1.33 docs, "Baseline" and "Restricted" tables);
* the implementation the API server runs: kubernetes/kubernetes
  ``staging/src/k8s.io/pod-security-admission/policy/check_*.go`` (each check below names its file),
  ``visitor.go`` (which containers a check visits), ``checks.go`` and ``registry.go`` (versioned
  checks: a level's policy at version X runs, per check, the revision with the newest
  ``MinimumVersion <= X``; a version above the newest registered revision is clamped to it).
  Two behaviours upstream patched into the v1.0 functions hold at every version here as there:
  ``image`` volumes are allowed by restrictedVolumes (PR #130394, Kubernetes 1.33) and
  ``securityContext.appArmorProfile`` is checked next to the beta annotation.

Semantics reproduced here:

* Every container check visits ``initContainers``, ``containers`` and ``ephemeralContainers``
  (``visitContainers``).
* "Pod or every container" checks (runAsNonRoot, seccompProfile restricted) accept a container
  that leaves the field unset only when the pod-level field is set to a good value; an explicit bad
  container value is refused even under a good pod value.
* Restricted includes every baseline check, except that restrictedVolumes replaces hostPathVolumes,
  capabilities_restricted replaces capabilities_baseline and seccompProfile_restricted replaces
  seccompProfile_baseline (``OverrideCheckIDs``): the outcome is the same, only the message differs.
* From v1.25 the Linux-only restricted checks (allowPrivilegeEscalation, capabilities_restricted,
  seccompProfile_restricted) skip pods with ``spec.os.name: windows``.
* Checks added after the pinned version do not apply: v1.34's hostProbesAndHostLifecycle is
  implemented and applies only from v1.34; v1.35's user-namespace relaxations and
  procMount_restricted are not implemented (versions above v1.34 are refused).
* The user-namespace relaxation of runAsNonRoot/runAsUser (``relaxPolicyForUserNamespacePod``) sits
  behind the alpha feature gate ``UserNamespacesPodSecurityStandards`` before v1.35; GKE does not
  enable alpha gates on standard clusters, so it is not applied.

Which objects PSA evaluates: Pods (and their ``ephemeralcontainers`` subresource) are evaluated in
all three modes; for workload resources with a pod template (Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob, ReplicationController, PodTemplate) only ``warn`` and ``audit`` evaluate the
template; ``enforce`` never rejects the controller object itself, it rejects the Pods the controller
then creates. :func:`check_object` returns the pod spec's violations for either; :func:`enforced_on`
says whether enforce applies to the object itself.

Usage: ``python -m tools.pod_security --level restricted [--version v1.33] FILE.yaml...`` prints one
line per object and exits 1 when any object violates the level.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from components import pod_templates

LEVELS = ("privileged", "baseline", "restricted")

# The newest policy version this module implements check by check. Newer versions change checks
# (v1.35: user-namespace relaxations, procMount_restricted; v1.37: more safe sysctls) it lacks.
NEWEST_VERSION = (1, 34)
OLDEST_VERSION = (1, 25)

_VERSION = re.compile(r"^v1\.(0|[1-9][0-9]*)$")


class UnsupportedVersion(ValueError):
    """A policy version this checker does not implement."""


def parse_version(version: str) -> tuple[int, int]:
    """``"v1.33"`` -> ``(1, 33)``; only versions this checker implements are accepted."""
    m = _VERSION.match(version)
    if not m:
        raise UnsupportedVersion(f"{version!r} is not a Pod Security version like v1.33")
    v = (1, int(m.group(1)))
    if not OLDEST_VERSION <= v <= NEWEST_VERSION:
        raise UnsupportedVersion(
            f"{version} is outside the versions this checker implements "
            f"(v1.{OLDEST_VERSION[1]}..v1.{NEWEST_VERSION[1]})"
        )
    return v


@dataclass(frozen=True)
class Violation:
    """One failed check, named like the upstream check ID."""

    check: str
    level: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check} ({self.level}): {self.detail}"


# ------------------------------------------------------------------ helpers


def _containers(spec: dict) -> Iterator[dict]:
    """visitor.go visitContainers: initContainers, containers, ephemeralContainers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _sc(obj: dict) -> dict:
    return obj.get("securityContext") or {}


def _names(items: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in items)


def _is_windows(spec: dict) -> bool:
    return ((spec.get("os") or {}).get("name")) == "windows"


# ------------------------------------------------------------------ baseline checks


def _host_namespaces(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_hostNamespaces.go: spec.hostNetwork, spec.hostPID, spec.hostIPC must be false/unset."""
    bad = [f for f in ("hostIPC", "hostNetwork", "hostPID") if spec.get(f) is True]
    return f"host namespaces: {', '.join(bad)}" if bad else None


def _privileged(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_privileged.go: containers[*].securityContext.privileged must be false/unset."""
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("privileged") is True]
    return f"privileged: containers {_names(bad)} must not set securityContext.privileged=true" if bad else None


_CAPS_BASELINE = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
     "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)


def _capabilities_baseline(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_capabilities_baseline.go: capabilities.add only from the container runtime's default set."""
    bad, caps = [], set()
    for c in _containers(spec):
        extra = [cap for cap in (_sc(c).get("capabilities") or {}).get("add") or [] if cap not in _CAPS_BASELINE]
        if extra:
            bad.append(c.get("name", ""))
            caps.update(extra)
    if bad:
        return f"non-default capabilities: containers {_names(bad)} must not add {_names(sorted(caps))}"
    return None


def _host_path_volumes(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_hostPathVolumes.go: spec.volumes[*].hostPath must be unset (any path, /dev included)."""
    bad = [f"{vol.get('name')}={vol['hostPath'].get('path')}" for vol in spec.get("volumes") or [] if vol.get("hostPath") is not None]
    return f"hostPath volumes: {', '.join(bad)}" if bad else None


def _host_ports(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_hostPorts.go: containers[*].ports[*].hostPort must be 0/unset."""
    bad: list[str] = []
    ports: list[Any] = []
    for c in _containers(spec):
        hp = [p.get("hostPort") for p in c.get("ports") or [] if p.get("hostPort")]
        if hp:
            bad.append(c.get("name", ""))
            ports.extend(str(p) for p in hp)
    return f"hostPort: containers {_names(bad)} use hostPorts {', '.join(ports)}" if bad else None


def _apparmor(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_appArmorProfile.go: securityContext.appArmorProfile.type (pod and containers) is
    RuntimeDefault/Localhost/unset; annotations container.apparmor.security.beta.kubernetes.io/*
    are runtime/default, localhost/* or empty."""
    bad = []
    setters = [("pod", _sc(spec))] + [(f"container {c.get('name')}", _sc(c)) for c in _containers(spec)]
    for who, sc in setters:
        t = (sc.get("appArmorProfile") or {}).get("type")
        if t is not None and t not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{who} appArmorProfile.type={t}")
    for k, val in ((meta or {}).get("annotations") or {}).items():
        if k.startswith("container.apparmor.security.beta.kubernetes.io/"):
            if val and val != "runtime/default" and not val.startswith("localhost/"):
                bad.append(f'{k}="{val}"')
    return f"forbidden AppArmor profiles: {', '.join(bad)}" if bad else None


def _selinux(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_seLinuxOptions.go: type in the allowed set (v1.31 adds container_engine_t); user/role unset."""
    allowed = {"", "container_t", "container_init_t", "container_kvm_t"}
    if v >= (1, 31):
        allowed.add("container_engine_t")
    bad = []
    setters = [("pod", _sc(spec))] + [(f"container {c.get('name')}", _sc(c)) for c in _containers(spec)]
    for who, sc in setters:
        opts = sc.get("seLinuxOptions")
        if opts is None:
            continue
        if opts.get("type", "") not in allowed or opts.get("user") or opts.get("role"):
            bad.append(who)
    return f"seLinuxOptions: {', '.join(bad)} set forbidden securityContext.seLinuxOptions" if bad else None


def _proc_mount(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_procMount.go: containers[*].securityContext.procMount is Default/unset."""
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("procMount") not in (None, "Default")]
    return f"procMount: containers {_names(bad)} must not set securityContext.procMount" if bad else None


def _seccomp_baseline(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_seccompProfile_baseline.go (v1.19+): seccompProfile.type, where set, is RuntimeDefault or Localhost."""
    bad = []
    setters = [("pod", _sc(spec))] + [(f"container {c.get('name')}", _sc(c)) for c in _containers(spec)]
    for who, sc in setters:
        prof = sc.get("seccompProfile")
        if prof is not None and prof.get("type") not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{who} seccompProfile.type={prof.get('type')}")
    return f"seccompProfile: {', '.join(bad)}" if bad else None


_SYSCTLS = {
    (1, 0): {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
             "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"},
    (1, 27): {"net.ipv4.ip_local_reserved_ports"},
    (1, 29): {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
              "net.ipv4.tcp_keepalive_probes"},
    (1, 32): {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"},
}


def allowed_sysctls(v: tuple[int, int]) -> frozenset[str]:
    """check_sysctls.go: sysctlsAllowedV1Dot0 / V1Dot27 / V1Dot29 / V1Dot32 (each a union of the previous)."""
    out: set[str] = set()
    for since, names in _SYSCTLS.items():
        if v >= since:
            out |= names
    return frozenset(out)


def _sysctls(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_sysctls.go: spec.securityContext.sysctls[*].name in the safe set of the version."""
    allowed = allowed_sysctls(v)
    bad = [s.get("name") for s in _sc(spec).get("sysctls") or [] if s.get("name") not in allowed]
    return f"forbidden sysctls: {', '.join(bad)}" if bad else None


def _windows_host_process(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_windowsHostProcess.go: windowsOptions.hostProcess (pod and containers) false/unset."""
    bad = []
    setters = [("pod", _sc(spec))] + [(f"container {c.get('name')}", _sc(c)) for c in _containers(spec)]
    for who, sc in setters:
        if (sc.get("windowsOptions") or {}).get("hostProcess") is True:
            bad.append(who)
    return f"hostProcess: {', '.join(bad)} must not set securityContext.windowsOptions.hostProcess=true" if bad else None


def _host_probes_and_lifecycle(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_hostProbesAndhostLifecycle.go (v1.34+): liveness/readiness/startup probes and
    postStart/preStop handlers must not set httpGet.host or tcpSocket.host."""
    bad: list[str] = []
    hosts: list[str] = []
    for c in _containers(spec):
        handlers = [c.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
        handlers += [(c.get("lifecycle") or {}).get(h) for h in ("postStart", "preStop")]
        raw = [(h.get(k) or {}).get("host") for h in handlers if h for k in ("httpGet", "tcpSocket")]
        found = [str(x) for x in raw if x]
        if found:
            bad.append(c.get("name", ""))
            hosts.extend(found)
    return f"probe or lifecycle host: containers {_names(bad)} use hosts {_names(hosts)}" if bad else None


# ------------------------------------------------------------------ restricted checks

_RESTRICTED_VOLUMES_OK = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                          "persistentVolumeClaim", "projected", "secret")


def _restricted_volumes(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_restrictedVolumes.go: only configMap, csi, downwardAPI, emptyDir, ephemeral, image,
    persistentVolumeClaim, projected, secret volumes (hostPath is refused here too)."""
    bad = [vol.get("name") for vol in spec.get("volumes") or []
           if not any(vol.get(k) is not None for k in _RESTRICTED_VOLUMES_OK)]
    return f"restricted volume types: volumes {_names(bad)}" if bad else None


def _allow_privilege_escalation(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_allowPrivilegeEscalation.go: every container sets allowPrivilegeEscalation=false
    (unset means true); from v1.25 Windows pods are skipped."""
    if _is_windows(spec):
        return None
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    return f"allowPrivilegeEscalation != false: containers {_names(bad)}" if bad else None


def _run_as_non_root(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_runAsNonRoot.go: runAsNonRoot=true at pod level or in every container; an explicit false
    anywhere is refused."""
    pod = _sc(spec).get("runAsNonRoot")
    explicit_bad = ["pod"] if pod is False else []
    implicit_bad = []
    for c in _containers(spec):
        val = _sc(c).get("runAsNonRoot")
        if val is False:
            explicit_bad.append(f"container {c.get('name')}")
        elif val is None and pod is not True:
            implicit_bad.append(c.get("name", ""))
    if explicit_bad:
        return f"runAsNonRoot != true: {', '.join(explicit_bad)} must not set securityContext.runAsNonRoot=false"
    if implicit_bad:
        return f"runAsNonRoot != true: pod or containers {_names(implicit_bad)} must set securityContext.runAsNonRoot=true"
    return None


def _run_as_user(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_runAsUser.go (v1.23+): runAsUser (pod and containers) must not be 0."""
    bad = ["pod"] if _sc(spec).get("runAsUser") == 0 else []
    bad += [f"container {c.get('name')}" for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    return f"runAsUser=0: {', '.join(bad)}" if bad else None


def _seccomp_restricted(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_seccompProfile_restricted.go (v1.19+, Windows skipped from v1.25): RuntimeDefault or
    Localhost at pod level or in every container."""
    if _is_windows(spec):
        return None
    ok = ("RuntimeDefault", "Localhost")
    pod = _sc(spec).get("seccompProfile")
    bad = []
    pod_set = False
    if pod is not None:
        if pod.get("type") in ok:
            pod_set = True
        else:
            bad.append("pod")
    implicit = []
    for c in _containers(spec):
        prof = _sc(c).get("seccompProfile")
        if prof is not None:
            if prof.get("type") not in ok:
                bad.append(f"container {c.get('name')}")
        elif not pod_set:
            implicit.append(c.get("name", ""))
    if bad:
        return f"seccompProfile: {', '.join(bad)} must not set a seccompProfile.type other than RuntimeDefault/Localhost"
    if implicit:
        return f"seccompProfile: pod or containers {_names(implicit)} must set securityContext.seccompProfile.type"
    return None


def _capabilities_restricted(meta: dict, spec: dict, v: tuple[int, int]) -> Optional[str]:
    """check_capabilities_restricted.go (v1.22+, Windows skipped from v1.25): drop includes ALL,
    add is empty or NET_BIND_SERVICE."""
    if _is_windows(spec):
        return None
    missing, adding = [], []
    for c in _containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            missing.append(c.get("name", ""))
        if any(a != "NET_BIND_SERVICE" for a in caps.get("add") or []):
            adding.append(c.get("name", ""))
    parts = []
    if missing:
        parts.append(f'containers {_names(missing)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        parts.append(f"containers {_names(adding)} must not add capabilities other than NET_BIND_SERVICE")
    return f"unrestricted capabilities: {'; '.join(parts)}" if parts else None


# (check ID, level, first version, function, baseline check it overrides at restricted)
CHECKS = (
    ("hostNamespaces", "baseline", (1, 0), _host_namespaces, None),
    ("privileged", "baseline", (1, 0), _privileged, None),
    ("capabilities_baseline", "baseline", (1, 0), _capabilities_baseline, None),
    ("hostPathVolumes", "baseline", (1, 0), _host_path_volumes, None),
    ("hostPorts", "baseline", (1, 0), _host_ports, None),
    ("appArmorProfile", "baseline", (1, 0), _apparmor, None),
    ("seLinuxOptions", "baseline", (1, 0), _selinux, None),
    ("procMount", "baseline", (1, 0), _proc_mount, None),
    ("seccompProfile_baseline", "baseline", (1, 19), _seccomp_baseline, None),
    ("sysctls", "baseline", (1, 0), _sysctls, None),
    ("windowsHostProcess", "baseline", (1, 0), _windows_host_process, None),
    ("hostProbesAndHostLifecycle", "baseline", (1, 34), _host_probes_and_lifecycle, None),
    ("restrictedVolumes", "restricted", (1, 0), _restricted_volumes, "hostPathVolumes"),
    ("allowPrivilegeEscalation", "restricted", (1, 8), _allow_privilege_escalation, None),
    ("runAsNonRoot", "restricted", (1, 0), _run_as_non_root, None),
    ("runAsUser", "restricted", (1, 23), _run_as_user, None),
    ("seccompProfile_restricted", "restricted", (1, 19), _seccomp_restricted, "seccompProfile_baseline"),
    ("capabilities_restricted", "restricted", (1, 22), _capabilities_restricted, "capabilities_baseline"),
)


def check_pod_spec(spec: dict, metadata: Optional[dict], level: str, version: str = "v1.33") -> list[Violation]:
    """Violations of ``level`` at ``version`` for one pod spec (and its metadata, for annotations)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    v = parse_version(version)
    if level == "privileged":
        return []
    active = [c for c in CHECKS if v >= c[2] and (c[1] == "baseline" or level == "restricted")]
    overridden = {c[4] for c in active if c[4]} if level == "restricted" else set()
    out = []
    for check_id, check_level, _, fn, _ in active:
        if check_id in overridden:
            continue
        detail = fn(metadata or {}, spec or {}, v)
        if detail:
            out.append(Violation(check_id, check_level, detail))
    return out


# DefaultPodSpecExtractor (pod-security-admission/admission/admission.go): the kinds PSA reads a pod
# spec from, and where the spec sits: the guardrails' pod-template kinds plus three they do not match.
_TEMPLATE_KINDS = {
    **pod_templates.template_paths(),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "PodTemplate": ("template",),
}


def pod_of(obj: dict) -> Optional[tuple[dict, dict]]:
    """(metadata, spec) PSA evaluates for ``obj``, or None when PSA does not look at this kind."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj.get("metadata") or {}, obj.get("spec") or {}
    path = _TEMPLATE_KINDS.get(kind or "")
    if path is None:
        return None
    node: Any = obj
    for key in path:
        node = (node or {}).get(key)
    node = node or {}
    return node.get("metadata") or {}, node.get("spec") or {}


def enforced_on(obj: dict) -> bool:
    """True when PSA ``enforce`` rejects this object itself (Pods); workload objects only get
    ``warn``/``audit``, enforce then applies to the Pods their controller creates."""
    return obj.get("kind") == "Pod"


def check_object(obj: dict, level: str, version: str = "v1.33") -> list[Violation]:
    """Violations of the pod (template) of ``obj``; [] for kinds PSA does not evaluate."""
    pod = pod_of(obj)
    if pod is None:
        return []
    meta, spec = pod
    return check_pod_spec(spec, meta, level, version)


# ------------------------------------------------------------------ the node escapes (issue: SR1/SR2 bypass)

ESCAPE_IMAGE = "registry.k8s.io/pause:3.10"


def restricted_pod(name: str, namespace: str, spec_extra: Optional[dict] = None,
                   container_extra: Optional[dict] = None, pod_sc: Optional[dict] = None) -> dict:
    """A Pod that passes `restricted`; the arguments add the one thing a case is about."""
    container = {
        "name": "main",
        "image": ESCAPE_IMAGE,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    container.update(copy.deepcopy(container_extra or {}))
    spec: dict = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if pod_sc is not None:
        spec["securityContext"] = pod_sc
    spec.update(copy.deepcopy(spec_extra or {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def node_escape_pods(namespace: str) -> dict[str, tuple[dict, str]]:
    """The pods that bypass SR1/SR2 through the node, each with the baseline check that refuses it.
    Otherwise they pass `restricted`, so a refusal is for the escape alone."""
    return {
        # SR1: the node's network namespace, where NetworkPolicy does not apply.
        "host-network": (restricted_pod("escape-host-network", namespace, spec_extra={"hostNetwork": True}),
                         "hostNamespaces"),
        # SR2: every device of the node, GPUs included, without a GPU request.
        "privileged": (restricted_pod("escape-privileged", namespace, container_extra={
            "securityContext": {"privileged": True}}), "privileged"),
        # SR2: the GPU device nodes straight from the host.
        "hostpath-dev": (restricted_pod(
            "escape-hostpath-dev", namespace,
            spec_extra={"volumes": [{"name": "dev", "hostPath": {"path": "/dev", "type": "Directory"}}]},
            container_extra={"volumeMounts": [{"name": "dev", "mountPath": "/host-dev", "readOnly": True}]},
        ), "hostPathVolumes"),
        # The node's processes (kubelet, device plugin, other tenants' model servers).
        "host-pid": (restricted_pod("escape-host-pid", namespace, spec_extra={"hostPID": True}), "hostNamespaces"),
    }


LABEL_PREFIX = "pod-security.kubernetes.io/"


@dataclass(frozen=True)
class Decision:
    """What Pod Security Admission does with one object in one namespace."""

    allowed: bool
    """False when ``enforce`` rejects the object (only ever for Pods)."""
    enforce: list[Violation]
    """Violations of the namespace's enforce level (for workload objects: reported, not enforced)."""
    warn: list[Violation]
    """Violations of the warn level: returned to the client as warnings."""
    audit: list[Violation]
    """Violations of the audit level: recorded as audit annotations."""


def _mode(labels: dict, mode: str) -> tuple[str, str]:
    # An unset level is `privileged` (the API server's default AdmissionConfiguration, which GKE
    # keeps); an unset version is `latest`, i.e. the newest version this checker implements.
    level = labels.get(f"{LABEL_PREFIX}{mode}", "privileged")
    version = labels.get(f"{LABEL_PREFIX}{mode}-version", "latest")
    if version == "latest":
        version = f"v1.{NEWEST_VERSION[1]}"
    return level, version


def admit(namespace_labels: dict, obj: dict) -> Decision:
    """Pod Security Admission's decision for creating ``obj`` in a namespace with these labels:
    enforce rejects Pods only; warn and audit evaluate Pods and pod templates alike."""
    results = {}
    for mode in ("enforce", "warn", "audit"):
        level, version = _mode(namespace_labels or {}, mode)
        results[mode] = check_object(obj, level, version)
    allowed = not (enforced_on(obj) and results["enforce"])
    return Decision(allowed, results["enforce"], results["warn"], results["audit"])


def main(argv: Optional[list[str]] = None) -> int:
    from components import yaml_io

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", choices=LEVELS[1:], required=True)
    ap.add_argument("--version", default=f"v1.{NEWEST_VERSION[1]}")
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args(argv)
    failed = False
    for path in args.files:
        for obj in yaml_io.load_all(path.read_text()):
            if not isinstance(obj, dict) or pod_of(obj) is None:
                continue
            name = f"{path}: {obj['kind']} {(obj.get('metadata') or {}).get('name')}"
            violations = check_object(obj, args.level, args.version)
            failed |= bool(violations)
            print(f"{'FAIL' if violations else 'PASS'} {name}")
            for viol in violations:
                print(f"     {viol}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
