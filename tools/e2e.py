"""End to end: `make e2e` runs the stack with the real Pulumi engine against a real (local) Kubernetes API server.

    python -m tools.e2e [--only NAME ...] [--keep-logs DIR] [--list]

It starts the local control plane (tools/cluster.py: etcd, kube-apiserver, kube-controller-manager v1.35.4, no
kubelet), runs an `existingCluster` stack of this program through the Pulumi CLI, checks each scenario, stops
the control plane and removes its temporary directory whatever happens, and prints one line per scenario,
`PASS <name>` or `FAIL <name>: <reason>`, then `e2e: N passed, F failed` (exit 1 when F > 0).

The stack config (`e2e`) is Pulumi.dev.yaml with what only a GKE cluster has taken out (`gcp:project`,
`cluster`, `networkPolicyLogging`: GKE's NetworkLogging CRD) and, instead, `existingCluster` (the local
cluster) and `kyverno.install` (chart from the pinned Go module, `skipAwait`, no kubectl commands): no Kyverno
pod can run without a kubelet, and the pulumi-command provider is not available. See docs/real-engines.md,
"End to end: make e2e".

Scenarios (in this order; later ones need `up`):
  preview            `pulumi preview` succeeds (server-side dry-run against the API server)
  up                 `pulumi up` succeeds; every Kubernetes object of the offline render exists with our fields
  up-idempotent      a second `pulumi up` changes nothing
  pod-security       the API server refuses a hostNetwork pod in a tenant namespace and admits the reference
                     tenant Jobs; in the agent namespaces it refuses hostNetwork, privileged and root agent pods
                     and admits a restricted one; tools/pod_security.py agrees with it on every case
  webhook-config     the API server accepts the webhook configuration Kyverno would write for every ClusterPolicy
                     the stack renders and routes by its matchConditions; the CI preview identity's admission
                     policy denies writes and admits dry-runs
  security-off       `security: false` removes every SR1/SR2/guardrail object and keeps the retained namespaces
  destroy-clean      `pulumi destroy` leaves no webhook configuration and nothing that blocks a re-install
  first-deploy-plan  deploy.yaml's sequence (preview --save-plan, the replacement gate, up --plan) on a stack whose
                     kubeconfig is produced by a resource (unknown at preview)
  apiserver-parity   every rule tools/apiserver.py has, or had, decided by the real provider and API server: the kept
                     rules' cases, and the cases that replace the retired ones
  declared-tenants   createTenantNamespaces: false: a missing tenant namespace fails the preview and the up at its
                     read and is not created; present ones are patched, and unpatched by the destroy
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import pathlib
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from components import yaml_io

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT = "llm-platform"
STACK = "e2e"
PLAN_STACK = "e2e-plan"
SOURCE_STACK = ROOT / "Pulumi.dev.yaml"
KYVERNO_MOD = ROOT / "engines" / "kyverno"
KYVERNO_MODULE = "github.com/kyverno/kyverno"
CONTEXT = "local"
# What only a GKE cluster has, taken out of the source stack (key -> why).
DROPPED = {
    "gcp:project": "no GCP project: the stack deploys into an existing cluster",
    f"{PROJECT}:cluster": "replaced by existingCluster (the local control plane)",
    f"{PROJECT}:networkPolicyLogging": "patches GKE's NetworkLogging/default, a CRD only GKE clusters have",
}
SCENARIOS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("preview", ()),
    ("up", ()),
    ("up-idempotent", ("up",)),
    ("pod-security", ("up",)),
    ("webhook-config", ("up",)),
    ("security-off", ("up",)),
    ("destroy-clean", ("up",)),
    ("first-deploy-plan", ()),
    ("apiserver-parity", ()),
    ("declared-tenants", ()),
)
NAMES = tuple(name for name, _ in SCENARIOS)


class E2EError(Exception):
    """A problem that stops the run before any scenario (one line on stderr, exit 2)."""


# ------------------------------------------------------------------------------------------ results


@dataclass
class Result:
    name: str
    ok: bool
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"PASS {self.name}" if self.ok else f"FAIL {self.name}: {self.reason}"


def summary(results: Sequence[Result], known: Sequence[str] = ()) -> str:
    passed = sum(1 for r in results if r.ok)
    expected = [r.name for r in results if not r.ok and r.name in known]
    tail = f" ({len(expected)} known: {', '.join(expected)})" if expected else ""
    return f"e2e: {passed} passed, {len(results) - passed} failed{tail}"


def exit_code(results: Sequence[Result], known: Sequence[str] = ()) -> int:
    """0 when every scenario passed but the known failures, which must still fail (a fixed one is news)."""
    unexpected = [r for r in results if r.ok == (r.name in known)]
    return 0 if not unexpected else 1


def one_line(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------ arguments


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tools.e2e", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                    help=f"run only these scenarios (and what they need); one of: {', '.join(NAMES)}")
    ap.add_argument("--keep-logs", type=pathlib.Path, metavar="DIR",
                    help="copy the Pulumi output of every operation and the cluster's logs here")
    ap.add_argument("--list", action="store_true", help="print the scenarios and the e2e stack config, run nothing")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds for the control plane to start (default 120)")
    ap.add_argument("--known-failure", action="append", default=[], choices=NAMES, metavar="NAME",
                    help="a scenario that reproduces an open defect: its FAIL does not fail the run, its PASS does "
                         "(then the defect is fixed: drop the flag)")
    return ap.parse_args(argv)


def selected(only: Optional[Sequence[str]]) -> list[str]:
    """The scenarios to run, in order: ``only`` plus what they need (all when None)."""
    if not only:
        return list(NAMES)
    needs = dict(SCENARIOS)
    want = set(only)
    for name in list(want):
        want |= set(needs[name])
    return [name for name in NAMES if name in want]


# ------------------------------------------------------------------------------------------ stack config


def stack_config(kubeconfig: str, chart_dir: str, source: pathlib.Path = SOURCE_STACK) -> dict[str, Any]:
    """The e2e stack's config: the source stack (dev) without what only GKE has, on the local cluster."""
    raw = (yaml_io.load(source.read_text(encoding="utf-8")) or {}).get("config") or {}
    cfg = {k: copy.deepcopy(v) for k, v in raw.items() if k not in DROPPED}
    cfg[f"{PROJECT}:existingCluster"] = {
        "context": CONTEXT,
        "kubeconfig": kubeconfig,
        # Not true of the local control plane (no nodes, no CNI): nothing here checks packets. Required by
        # `security: true`, which is what is under test (the NetworkPolicies are written and read back).
        "networkPolicyEnforced": True,
        # GKE Sandbox's RuntimeClass `gvisor`: the e2e creates it, as GKE does with a sandbox pool.
        "gkeSandbox": True,
    }
    kyverno = dict(cfg.get(f"{PROJECT}:kyverno") or {})
    kyverno["install"] = {"chartPath": chart_dir, "skipAwait": True, "kubectlCommands": False}
    cfg[f"{PROJECT}:kyverno"] = kyverno
    return cfg


def raw_config(cfg: dict[str, Any]) -> dict[str, str]:
    """As the engine hands config to the program (strings; objects as JSON)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()}


def settings_of(cfg: dict[str, Any]) -> Any:
    from components import config

    return config.parse(raw_config(cfg), STACK)


# ------------------------------------------------------------------------------------------ the chart


def kyverno_module_dir() -> pathlib.Path:
    """The module pinned in engines/kyverno/go.mod, downloaded into the module cache if missing."""
    try:
        out = subprocess.run(["go", "mod", "download", "-json", KYVERNO_MODULE], cwd=KYVERNO_MOD,
                             capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise E2EError("go not found: the Kyverno chart comes from the Go module pinned in engines/kyverno/go.mod") from None
    if out.returncode != 0:
        raise E2EError(f"go mod download {KYVERNO_MODULE} failed: {one_line(out.stderr or out.stdout)}")
    info = json.loads(out.stdout)
    return pathlib.Path(info["Dir"])


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _merged(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for k, v in extra.items():
            out[k] = _merged(base.get(k), v)
        return out
    return copy.deepcopy(extra)


def prepare_chart(module_dir: pathlib.Path, dest: pathlib.Path, values: dict[str, Any]) -> tuple[pathlib.Path, list[str]]:
    """A copy of the module's charts/kyverno that Helm installs: the module ships three subcharts of Chart.yaml
    (kyverno-api, openreports, reports-server) only as a lock entry, and Helm refuses a chart whose charts/ lacks
    a dependency, enabled or not. Each missing one must be disabled by its `condition` under our values; it is
    then dropped from the copy's Chart.yaml (what Helm renders is the same: a disabled subchart renders nothing)."""
    from components.kyverno import CHART_VERSION

    src = module_dir / "charts" / "kyverno"
    meta = yaml_io.load((src / "Chart.yaml").read_text(encoding="utf-8"))
    if meta.get("version") != CHART_VERSION:
        raise E2EError(f"{src}: chart version {meta.get('version')}, the stack pins {CHART_VERSION}")
    chart = dest / "kyverno"
    shutil.copytree(src, chart, ignore=shutil.ignore_patterns("tmpcharts-*"))
    for path in [chart, *chart.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
    merged = _merged(yaml_io.load((src / "values.yaml").read_text(encoding="utf-8")), values)
    present = {p.name for p in (chart / "charts").iterdir()} if (chart / "charts").is_dir() else set()
    kept, dropped = [], []
    for dep in meta.get("dependencies") or []:
        if dep["name"] in present or any(p.startswith(f"{dep['name']}-") and p.endswith(".tgz") for p in present):
            kept.append(dep)
            continue
        condition = next((c for c in (dep.get("condition") or "").split(",") if _lookup(merged, c.strip()) is not None), "")
        if not condition or _lookup(merged, condition.strip()) is not False:
            raise E2EError(f"the chart's dependency {dep['name']} is not in {src / 'charts'} and is not disabled "
                           f"by our values (condition {dep.get('condition')!r})")
        dropped.append(f"{dep['name']} ({condition.strip()}=false)")
    meta["dependencies"] = kept
    (chart / "Chart.yaml").write_text(yaml_io.dump(meta, sort_keys=False), encoding="utf-8")
    return chart, dropped


# ------------------------------------------------------------------------------------------ processes


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_descendants(timeout: float = 10.0) -> int:
    """Stop whatever this process started and is still running (the Pulumi CLI and its plugins after an
    interruption), by PID; the number stopped."""
    from tools.cluster import stop

    pids = descendants(os.getpid())
    if pids:
        stop(pids, timeout)
    return len(pids)



# ------------------------------------------------------------------------------------------ pulumi


@dataclass
class Run:
    """The outcome of one Pulumi operation."""

    ok: bool
    seconds: float
    changes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    """`op type name [changed keys]` of every step that is not `same`."""
    stdout: str = ""
    warnings: list[str] = field(default_factory=list)
    by_urn: dict[str, list[str]] = field(default_factory=dict)
    """Error diagnostics per resource URN."""

    def error_text(self) -> str:
        return "; ".join(dict.fromkeys(self.errors)) or "failed without an error diagnostic"


class Pulumi:
    """The Pulumi CLI on PATH, driving __main__.py as an Automation API inline program (no language host)."""

    def __init__(self, base: pathlib.Path, log_dir: pathlib.Path):
        from pulumi import automation as auto

        self.auto = auto
        self.base = base
        self.workspace = base / "workspace"
        self.workspace.mkdir(parents=True)
        self.log_dir = log_dir
        for d in ("state", "home", "tmp"):
            (base / d).mkdir()
        self.env = {
            # The CLI and its plugins write temporary files (the provider a kubeconfig per configure) and leave
            # some behind: under the run's directory, they go with it.
            "TMPDIR": str(base / "tmp"),
            "PULUMI_BACKEND_URL": f"file://{base / 'state'}",
            "PULUMI_HOME": str(base / "home"),
            "PULUMI_CONFIG_PASSPHRASE": "llm-platform-e2e",
            "PULUMI_SKIP_UPDATE_CHECK": "1",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }
        # The engine takes pulumi-resource-kubernetes from PATH only while ambient plugins are allowed.
        os.environ.pop("PULUMI_IGNORE_AMBIENT_PLUGINS", None)
        shutil.copy(ROOT / "Pulumi.yaml", self.workspace / "Pulumi.yaml")
        self.count = 0

    def write_config(self, stack: str, cfg: dict[str, Any]) -> pathlib.Path:
        path = self.workspace / f"Pulumi.{stack}.yaml"
        path.write_text(yaml_io.dump({"config": cfg}, sort_keys=True), encoding="utf-8")
        return path

    def stack(self, name: str, program: Callable[[], None]) -> Any:
        cmd = self.auto.PulumiCommand()  # the `pulumi` on PATH
        return self.auto.create_or_select_stack(
            name, project_name=PROJECT, program=program,
            opts=self.auto.LocalWorkspaceOptions(work_dir=str(self.workspace), pulumi_home=self.env["PULUMI_HOME"],
                                                 env_vars=self.env, secrets_provider="passphrase", pulumi_command=cmd))

    def run(self, stack: Any, op: str, **kwargs: Any) -> Run:
        """``op`` (preview, up, destroy) with its output logged; never raises for an engine failure."""
        self.count += 1
        log = (self.log_dir / f"{self.count:02d}-{stack.name}-{op}.log").open("w", encoding="utf-8")
        errors: list[str] = []
        warnings: list[str] = []
        steps: list[str] = []
        by_urn: dict[str, list[str]] = {}

        def on_event(event: Any) -> None:
            diag = event.diagnostic_event
            if diag is not None:
                msg = " ".join(diag.message.split())
                if diag.severity == "error" and msg:
                    errors.append(msg)
                    if diag.urn:
                        by_urn.setdefault(diag.urn, []).append(msg)
                elif diag.severity == "warning" and msg:
                    warnings.append(msg)
            pre = event.resource_pre_event
            if pre is not None and pre.metadata.op not in ("same", "read"):
                m = pre.metadata
                name = m.urn.rsplit("::", 1)[-1]
                keys = f" [{', '.join(m.diffs)}]" if m.diffs else ""
                steps.append(f"{m.op.value if hasattr(m.op, 'value') else m.op} {m.type} {name}{keys}")

        began = time.monotonic()
        ok, changes, stdout = True, {}, ""
        try:
            fn = getattr(stack, op)
            result = fn(on_output=lambda line: log.write(line + "\n"), on_event=on_event, color="never", **kwargs)
            stdout = getattr(result, "stdout", "") or ""
            if op == "preview":
                changes = dict(result.change_summary or {})
            elif op == "up":
                changes = dict(result.summary.resource_changes or {})
        except self.auto.CommandError as err:
            ok = False
            log.write(f"\n{err}\n")
            if not errors:
                errors = [line.strip() for line in str(err).splitlines() if "error:" in line][:5]
        finally:
            log.close()
        return Run(ok, time.monotonic() - began, {k: v for k, v in changes.items() if v}, errors, steps, stdout,
                   list(dict.fromkeys(warnings)), by_urn)


def project_program() -> None:
    """__main__.py, as `pulumi up` runs it."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def unknown_kubeconfig_program(kubeconfig_text: str) -> Callable[[], None]:
    """__main__.py with the existing cluster's providers built from a kubeconfig that a resource of the stack
    produces (here: known once a ConfigMap is created), as a stack that creates its cluster gets it: unknown
    during the preview of its first deploy. Nothing else of the program changes."""

    def program() -> None:
        import pulumi
        import pulumi_kubernetes as k8s

        from components import cluster

        bootstrap = k8s.Provider("e2e-bootstrap", kubeconfig=kubeconfig_text, context=CONTEXT)
        handle = k8s.core.v1.ConfigMap(
            "e2e-cluster-handle", metadata={"name": "e2e-cluster-handle", "namespace": "default"},
            data={"stands-for": "the GKE cluster resource whose outputs make the kubeconfig"},
            opts=pulumi.ResourceOptions(provider=bootstrap))
        produced = handle.id.apply(lambda _: kubeconfig_text)
        original = (cluster.existing_cluster_provider, cluster.existing_cluster_adopting_provider)

        def strict(config: Any) -> Any:
            return cluster.kubernetes_provider("existing-cluster", cluster_identifier=cluster.existing_cluster_identifier(config),
                                               kubeconfig=produced, context=config.context)

        def adopting(config: Any) -> Any:
            return cluster.kubernetes_provider("existing-cluster-adopt", cluster_identifier=cluster.existing_cluster_identifier(config),
                                               kubeconfig=produced, context=config.context, upsert_existing_objects=True)

        cluster.existing_cluster_provider, cluster.existing_cluster_adopting_provider = strict, adopting
        try:
            project_program()
        finally:
            cluster.existing_cluster_provider, cluster.existing_cluster_adopting_provider = original

    return program


# ------------------------------------------------------------------------------------------ the run


@dataclass
class Env:
    """Everything the scenarios share."""

    base: pathlib.Path
    kubeconfig: pathlib.Path
    kube: Any
    pulumi: Pulumi
    cfg: dict[str, Any]
    config_file: pathlib.Path
    stack: Any
    settings: Any
    done: dict[str, bool] = field(default_factory=dict)
    rendered: list[dict[str, Any]] = field(default_factory=list)
    baseline_webhooks: set[str] = field(default_factory=set)
    cluster_seconds: float = 0.0


def reference_workloads() -> list[dict[str, Any]]:
    """The reference platform's tenant workloads (objects with a pod spec), as tests/test_pod_security.py reads them."""
    from tools import pod_security

    value = os.environ.get("REFERENCE_PLATFORM_DIR")
    path = pathlib.Path(value) if value else ROOT.parent / "shared" / "reference-platform"
    out = []
    for f in sorted((path / "workloads").rglob("*.yaml")):
        for obj in yaml_io.load_all(f.read_text(encoding="utf-8")):
            if isinstance(obj, dict) and pod_security.pod_of(obj) is not None:
                out.append(obj)
    return out


def scenario_preview(env: Env) -> Result:
    run = env.pulumi.run(env.stack, "preview")
    if not run.ok:
        return Result("preview", False, run.error_text())
    notes = [f"{_changes(run.changes)} in {run.seconds:.1f} s"]
    notes += [w for w in run.warnings if "pulumi-resource-kubernetes" in w or "expected to have version" in w][:2]
    return Result("preview", True, notes=notes)


def _changes(changes: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(changes.items())) or "no changes"


def render(env: Env) -> list[dict[str, Any]]:
    """Every Kubernetes object of `python -m tools.render --stack e2e` with the same stack file."""
    out_dir = env.base / "render"
    proc = subprocess.run([sys.executable, "-m", "tools.render", "--stack", STACK, "--stack-file", str(env.config_file),
                           "--out", str(out_dir)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the offline render failed: {one_line(proc.stderr or proc.stdout)}")
    objects = []
    for path in sorted((out_dir / "k8s").glob("*.yaml")):
        objects.append(yaml_io.load(path.read_text(encoding="utf-8")))
    return objects


def scenario_up(env: Env) -> Result:
    from tools.e2e_kube import subset_differences

    run = env.pulumi.run(env.stack, "up")
    if not run.ok:
        return Result("up", False, run.error_text())
    notes = [f"{_changes(run.changes)} in {run.seconds:.1f} s"]
    try:
        env.rendered = render(env)
    except RuntimeError as err:
        return Result("up", False, str(err), notes)
    missing, differ = [], []
    for obj in env.rendered:
        meta = obj.get("metadata") or {}
        label = f"{obj['kind']} {meta.get('namespace', '') + '/' if meta.get('namespace') else ''}{meta.get('name')}"
        live = env.kube.get(obj)
        if live.status == 404:
            missing.append(label)
        elif not live.ok:
            differ.append(f"{label}: GET answered HTTP {live.status}: {live.message}")
        else:
            diffs = subset_differences(obj, live.body)
            if diffs:
                differ.append(f"{label}: {'; '.join(diffs[:3])}{' ...' if len(diffs) > 3 else ''}")
    release = env.kube.list("v1", "Secret", "kyverno", "owner=helm,name=kyverno")
    status = sorted({(s.get("metadata", {}).get("labels") or {}).get("status", "?") for s in release})
    notes.append(f"{len(env.rendered)} rendered objects compared with the live ones; Helm release kyverno: {', '.join(status) or 'absent'}")
    if missing or differ:
        return Result("up", False, one_line(
            (f"{len(missing)} rendered object(s) absent from the cluster: {', '.join(missing[:5])}; " if missing else "")
            + (f"{len(differ)} differ: {' | '.join(differ[:3])}" if differ else "")), notes + missing + differ)
    return Result("up", True, notes=notes)


def scenario_up_idempotent(env: Env) -> Result:
    run = env.pulumi.run(env.stack, "up")
    if not run.ok:
        return Result("up-idempotent", False, run.error_text())
    changed = {k: v for k, v in run.changes.items() if k != "same"}
    if changed or run.steps:
        return Result("up-idempotent", False, one_line(f"the second up changed {_changes(changed)}: {'; '.join(run.steps[:6])}"),
                      run.steps)
    return Result("up-idempotent", True, notes=[f"{_changes(run.changes)} in {run.seconds:.1f} s"])


def _wait_service_account(env: Env, namespace: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if env.kube.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default").ok:
            return True
        time.sleep(0.2)
    return False


def scenario_pod_security(env: Env) -> Result:
    from tools import e2e_psa, pod_security
    from tools.e2e_kube import psa_reasons

    s = env.settings
    tenant = s.tenants[0]
    notes: list[str] = []
    problems: list[str] = []
    # 1. The headline: hostNetwork refused in a tenant namespace.
    host_net = e2e_psa.in_namespace(pod_security.node_escape_pods(tenant)["host-network"][0], tenant)
    r = env.kube.create(host_net, dry_run=True)
    if r.status == 403 and psa_reasons(r.message):
        notes.append(f"hostNetwork pod in {tenant}: refused ({one_line(r.message, 200)})")
    else:
        problems.append(f"hostNetwork pod in {tenant} not refused by PodSecurity: HTTP {r.status} {one_line(r.message, 200)}")
    # 2. The reference tenant Jobs, for real: the Job controller creates their Pods, which PodSecurity enforces on.
    jobs = [o for o in reference_workloads() if o.get("kind") == "Job"]
    if not jobs:
        problems.append("no reference tenant Jobs found (set REFERENCE_PLATFORM_DIR or place ../shared/reference-platform)")
    created = []
    for job in jobs:
        obj = copy.deepcopy(job)
        obj["metadata"] = {"name": f"e2e-{job['metadata']['name']}", "namespace": tenant,
                           "labels": dict(job["metadata"].get("labels") or {})}
        obj["spec"]["suspend"] = False  # what Kueue does on admission
        made = env.kube.create(obj)
        if not made.ok:
            problems.append(f"Job {job['metadata']['name']} refused in {tenant}: HTTP {made.status} {one_line(made.message, 200)}")
            continue
        created.append(obj)
        if made.warnings:
            problems.append(f"Job {job['metadata']['name']}: warnings {made.warnings}")
    for obj in created:
        name = obj["metadata"]["name"]
        deadline, failed = time.monotonic() + 30, ""
        pods: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not pods:
            pods = env.kube.list("v1", "Pod", tenant, f"batch.kubernetes.io/job-name={name}")
            events = env.kube.list("v1", "Event", tenant)
            failed = next((e.get("message", "") for e in events if e.get("reason") == "FailedCreate"
                           and (e.get("involvedObject") or {}).get("name") == name), "")
            if failed:
                break
            time.sleep(0.3)
        if pods:
            notes.append(f"Job {name}: the Job controller's Pod {pods[0]['metadata']['name']} was admitted in {tenant}")
        else:
            problems.append(f"Job {name}: no Pod created in {tenant} ({failed or 'none within 30 s'})")
        env.kube.delete(obj, wait=20)
    # 3. The agent namespaces: node escapes and root refused, a restricted agent pod (RuntimeClass gvisor) admitted.
    agent_namespaces = _agent_pod_security(env, notes, problems)
    # 4. The checker against the API server, case by case, namespace by namespace.
    grid = e2e_psa.grid()
    namespaces = {**grid, tenant: _psa_labels(env, tenant), **agent_namespaces}
    for ns, labels in grid.items():
        r = env.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        if not r.ok or not _wait_service_account(env, ns):
            problems.append(f"namespace {ns}: HTTP {r.status} {r.message}")
    cases = e2e_psa.cases()
    if agent_namespaces:
        from components.workload_isolation import RUNTIME_CLASS

        cases += [case for case, _ in e2e_psa.agent_cases(RUNTIME_CLASS)]
    for obj in reference_workloads():
        cases.append(e2e_psa.Case(f"reference-{obj['kind']}-{obj['metadata']['name']}", obj))
        meta, spec = pod_security.pod_of(obj) or ({}, {})
        as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{obj['metadata']['name']}-pod", **meta}, "spec": spec}
        cases.append(e2e_psa.Case(f"reference-pod-of-{obj['metadata']['name']}", as_pod))
    disagreements: list[str] = []
    worded: list[str] = []
    evaluated = 0
    for case in cases:
        for ns, labels in namespaces.items():
            want = e2e_psa.expected(labels, case.obj)
            got = e2e_psa.send(env.kube, case, ns)
            evaluated += 1
            diff = e2e_psa.differences(want, got)
            if diff:
                disagreements.append(f"{case.name} in {ns}: {diff}")
            elif e2e_psa.wording(want, got):
                worded.append(f"{case.name} in {ns}: {e2e_psa.wording(want, got)}")
    for ns in grid:
        env.kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, wait=60)
    notes.append(f"checker vs API server: {len(cases)} cases x {len(namespaces)} namespaces = {evaluated} decisions, "
                 f"{len(disagreements)} disagreement(s)")
    notes += disagreements
    if worded:
        notes.append(f"same checks, worded differently in {len(worded)} decision(s) (upstream words the AppArmor reason by the "
                     "number of bad values; the API server first copies the deprecated AppArmor annotation into "
                     f"securityContext.appArmorProfile, applyAppArmorVersionSkew): {worded[0]}")
    if disagreements:
        problems.append(f"tools/pod_security.py disagrees with the API server on {len(disagreements)} of {evaluated}: "
                        + " | ".join(disagreements[:3]))
    if problems:
        return Result("pod-security", False, one_line("; ".join(problems), 900), notes)
    return Result("pod-security", True, notes=notes)


def _psa_labels(env: Env, namespace: str) -> dict[str, str]:
    from tools import e2e_psa

    labels = (env.kube.request("GET", f"/api/v1/namespaces/{namespace}").body.get("metadata") or {}).get("labels") or {}
    return {k: v for k, v in labels.items() if k.startswith(e2e_psa.PSA)}


def _agent_pod_security(env: Env, notes: list[str], problems: list[str]) -> dict[str, dict[str, str]]:
    """Each agent namespace as the stack left it (its Pod Security labels): the API server must refuse the
    hostNetwork, privileged and root agent pods and admit the restricted one, all with the RuntimeClass the
    agent policy requires; a pod naming a RuntimeClass that does not exist is refused by the RuntimeClass
    admission plugin. Returns the namespaces with their labels, for the checker's comparison."""
    from components.workload_isolation import RUNTIME_CLASS
    from tools import e2e_psa

    s = env.settings
    if not (s.security and s.agent_isolation.enabled):
        return {}
    out: dict[str, dict[str, str]] = {}
    level = s.agent_isolation.pod_security.enforce
    for ns in s.agent_isolation.namespaces:
        labels = _psa_labels(env, ns)
        if labels.get(f"{e2e_psa.PSA}enforce") != level:
            problems.append(f"agent namespace {ns}: enforce label {labels.get(f'{e2e_psa.PSA}enforce')!r}, config says {level!r}")
        out[ns] = labels
        for case, admit in e2e_psa.agent_cases(RUNTIME_CLASS):
            got = e2e_psa.send(env.kube, case, ns)
            said = e2e_psa._say(got) if got.allowed is not None else f"not evaluated ({got.detail})"
            if got.allowed is not admit:
                problems.append(f"{case.name} in {ns}: the API server {said}, must be {'admitted' if admit else 'refused'}")
            else:
                notes.append(f"{case.name} in {ns} ({level}, runtimeClassName {RUNTIME_CLASS}): {said}")
        restricted = next(case for case, admit in e2e_psa.agent_cases(e2e_psa.MISSING_RUNTIME_CLASS) if admit)
        r = env.kube.create(e2e_psa.in_namespace(restricted.obj, ns), dry_run=True)
        if not r.ok and "RuntimeClass" in r.message and "not found" in r.message:
            notes.append(f"the same agent pod with runtimeClassName {e2e_psa.MISSING_RUNTIME_CLASS}: refused "
                         f"(HTTP {r.status} {one_line(r.message, 160)}): the RuntimeClass must exist before agents are admitted")
        else:
            problems.append(f"agent pod with a missing RuntimeClass in {ns}: expected the RuntimeClass admission plugin's "
                            f"refusal, got HTTP {r.status} {one_line(r.message, 200)}")
    return out


def _gpu_pod(name: str, namespace: str, gpu: bool) -> dict[str, Any]:
    from tools import pod_security

    extra = {"resources": {"limits": {"nvidia.com/gpu": 1}}} if gpu else {"resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}
    return pod_security.restricted_pod(name, namespace, container_extra=extra)


def scenario_webhook_config(env: Env) -> Result:
    from tools import e2e_webhook

    notes: list[str] = []
    problems: list[str] = []
    # The route kinds of restrict-platform-gateway-routes are Gateway API CRDs (GKE installs them): stand-ins
    # make the API server serve them, so that policy's webhook and matchConditions reach it too.
    stand_ins = e2e_webhook.gateway_api_stand_ins()
    problems += e2e_webhook.install(env.kube, stand_ins)
    try:
        vwc, skipped, placed = e2e_webhook.build(env.kube)
        notes += skipped
        notes.append("webhooks: " + ", ".join(f"{w['name']} ({len(w['rules'])} rules, {len(w.get('matchConditions', []))} matchConditions)"
                                              for w in vwc["webhooks"]))
        rendered = [o for o in env.rendered if o.get("kind") == "ClusterPolicy"]
        coverage, uncovered = e2e_webhook.coverage(rendered, placed, vwc)
        notes += coverage
        problems += uncovered
        made = env.kube.create(vwc)
        if not made.ok:
            problems.append(f"the API server refused Kyverno's {e2e_webhook.NAME}: HTTP {made.status}: {made.message}")
        else:
            try:
                problems += _route_probes(env, vwc, notes)
            finally:
                env.kube.delete(vwc, wait=10)
            problems += _network_policy_writer_probes(env, vwc, placed, notes)
    finally:
        for crd in stand_ins:
            env.kube.delete(crd, wait=30)
        env.kube.forget_discovery()
    problems += _ci_identities(env, notes)
    if problems:
        return Result("webhook-config", False, one_line("; ".join(problems), 900), notes)
    return Result("webhook-config", True, notes=notes)


def _webhook_of(vwc: dict[str, Any], policy: str, default: str = "") -> str:
    return next((w["name"] for w in vwc["webhooks"] if w["name"].endswith(f"-finegrained-{policy}")), default or policy)


def _probe(env: Env, obj: dict[str, Any], webhook: Optional[str], notes: list[str], as_user: Optional[str] = None,
           as_group: Optional[str] = None) -> list[str]:
    """Dry-run ``obj``: with ``webhook``, the API server must send it there (Fail, and no Kyverno pod answers);
    without, admit it."""
    who = f" as {as_user}{' in ' + as_group if as_group else ''}" if as_user else ""
    where = f"{obj['kind']} {obj['metadata'].get('namespace', '') + '/' if obj['metadata'].get('namespace') else ''}{obj['metadata']['name']}{who}"
    r = env.kube.create(obj, dry_run=True, as_user=as_user, as_group=as_group)
    if webhook is None:
        if r.ok:
            notes.append(f"{where}: admitted (no Fail webhook selected it)")
            return []
        return [f"{where}: expected admitted, got HTTP {r.status} {one_line(r.message, 250)}"]
    if r.ok:
        return [f"{where}: admitted, but the matchConditions should have sent it to {webhook} (which cannot answer)"]
    if f'"{webhook}"' in r.message or webhook in r.message:
        notes.append(f"{where}: sent to {webhook} (Fail; no Kyverno pod answers): {one_line(r.message, 200)}")
        return []
    return [f"{where}: refused, but not by {webhook}: HTTP {r.status} {one_line(r.message, 250)}"]


def _route_probes(env: Env, vwc: dict[str, Any], notes: list[str]) -> list[str]:
    """With Kyverno's whole configuration in place: does the API server send each probe where the matchConditions say?"""
    from components.tenant_boundaries import ROUTE_GUARD

    time.sleep(1.0)  # the API server's webhook source picks the configuration up asynchronously
    tenant = env.settings.tenants[0]
    agents = env.settings.agent_isolation.namespaces[0] if env.settings.agent_isolation.enabled else None
    probes: list[tuple[dict[str, Any], Optional[str]]] = [
        (_gpu_pod("e2e-gpu-no-queue", tenant, True), "validate.kyverno.svc-fail-finegrained-require-kueue-queue-name"),
        (_gpu_pod("e2e-cpu", tenant, False), None),
        (_gpu_pod("e2e-gpu-serving", "serving", True), None),
    ]
    # The shared Fail webhook (no matchConditions): the egress-lockdown generate rule matches Namespaces.
    if any(w["name"] == "validate.kyverno.svc-fail" for w in vwc["webhooks"]):
        probes.append(({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "e2e-probe-namespace"}},
                       "validate.kyverno.svc-fail"))
    if agents:
        probes.append((_gpu_pod("e2e-agent", agents, False), _webhook_of(vwc, "agent-runtime-isolation")))
    # restrict-platform-gateway-routes: a tenant's route is sent to it, a platform namespace's is not.
    if env.settings.security:
        from components.tenant_boundaries import route_namespaces

        gateway = env.settings.tenant_boundaries.platform_gateways[0]
        probes.append((_route("e2e-tenant-route", tenant, gateway), _webhook_of(vwc, ROUTE_GUARD)))
        probes.append((_route("e2e-platform-route", route_namespaces(env.settings)[0], gateway), None))
    problems: list[str] = []
    for obj, webhook in probes:
        problems += _probe(env, obj, webhook, notes)
    return problems


def _route(name: str, namespace: str, gateway: Any) -> dict[str, Any]:
    from tools import e2e_webhook

    return {"apiVersion": f"{e2e_webhook.GATEWAY_API_GROUP}/v1", "kind": "HTTPRoute", "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [{"name": gateway.name, "namespace": gateway.namespace}]}}


def _network_policy_writer_probes(env: Env, vwc: dict[str, Any], placed: dict[str, str], notes: list[str]) -> list[str]:
    """restrict-network-policy-writes' webhook alone (every NetworkPolicy also reaches the shared Fail webhook
    through the egress-lockdown generate rule, which would hide it): a tenant's write in an agent namespace is
    sent to it; a platform writer's, and one by the group system:masters, are not."""
    from components.tenant_boundaries import NETWORK_POLICY_GUARD, network_policy_writers

    if not (env.settings.security and env.settings.agent_isolation.enabled):
        return []
    webhook = next((w for w in vwc["webhooks"] if w["name"] == placed.get(NETWORK_POLICY_GUARD)), None)
    if webhook is None or not webhook.get("matchConditions"):
        return [f"{NETWORK_POLICY_GUARD}: no fine-grained webhook with matchConditions in Kyverno's configuration"]
    agents = env.settings.agent_isolation.namespaces[0]
    users, groups = network_policy_writers(env.settings)
    tenant_user = "e2e-tenant"
    writer = (env.settings.tenant_boundaries.network_policy_writers or users)[0]
    alone: dict[str, Any] = {**vwc, "metadata": {"name": "e2e-network-policy-writers"}, "webhooks": [webhook]}
    # RBAC lets both users write NetworkPolicies there: what is left to refuse is admission's.
    binding: dict[str, Any] = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "e2e-network-policy-writers", "namespace": agents},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u} for u in (tenant_user, writer)]}
    problems: list[str] = []
    for obj in (binding, alone):
        r = env.kube.create(obj)
        if not r.ok:
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: HTTP {r.status} {one_line(r.message, 200)}")
    try:
        if problems:
            return problems
        time.sleep(1.0)  # picked up asynchronously
        policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "e2e-allow-all", "namespace": agents},
                  "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}
        problems += _probe(env, policy, webhook["name"], notes, as_user=tenant_user)
        problems += _probe(env, policy, None, notes, as_user=writer)
        problems += _probe(env, policy, None, notes, as_user=tenant_user, as_group=groups[0])
        return problems
    finally:
        env.kube.delete(alone, wait=10)
        env.kube.delete(binding, wait=10)


def _ci_identities(env: Env, notes: list[str]) -> list[str]:
    """k8s/ci/preview-*.yaml: applied as they are, then, as the identity, a real write must be denied and a dry-run
    admitted. When the API server refuses the file's ValidatingAdmissionPolicy, the same file with the refused
    field corrected is tried too: only as a note (the scenario fails on the file as it is)."""
    problems = []
    for path in sorted((ROOT / "k8s" / "ci").glob("preview-*.yaml")):
        docs = [d for d in yaml_io.load_all(path.read_text(encoding="utf-8")) if d]
        refused = _ci_identity(env, path.name, docs, notes)
        problems += refused
        vap = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
        rules = vap["spec"]["matchConstraints"]["resourceRules"]
        if any("ValidatingAdmissionPolicy" in p and "'*/*'" in p for p in refused) and any("*/*" in r["resources"] for r in rules):
            fixed = copy.deepcopy(docs)
            for rule in next(d for d in fixed if d["kind"] == "ValidatingAdmissionPolicy")["spec"]["matchConstraints"]["resourceRules"]:
                if "*/*" in rule["resources"]:
                    rule["resources"] = ["*/*"]
            fixed_notes: list[str] = []
            still = _ci_identity(env, f"{path.name} with resources: ['*/*'] (a corrected copy, not the file)", fixed, fixed_notes)
            notes.extend(fixed_notes + still)
    return problems


def _ci_identity(env: Env, label: str, docs: list[dict[str, Any]], notes: list[str]) -> list[str]:
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    user = binding["subjects"][0]["name"]
    vap = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
    message = vap["spec"]["validations"][0]["message"]
    problems: list[str] = []
    applied = []
    for doc in docs:
        r = env.kube.apply(doc)
        if r.ok:
            applied.append(doc)
        else:
            problems.append(f"{label}: {doc['kind']} {doc['metadata']['name']} refused by the API server: "
                            f"HTTP {r.status} {r.message}")
    try:
        if problems:
            return problems
        probe = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "e2e-ci-probe", "namespace": "serving"},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
        dry = env.kube.create(probe, dry_run=True, as_user=user)
        if not dry.ok:
            problems.append(f"{label}: a dry-run by {user} was refused: HTTP {dry.status} {one_line(dry.message, 200)}")
        # The policy takes effect once the API server has loaded it: retry a real write until it is denied.
        began, leaked = time.monotonic(), 0
        while time.monotonic() - began < 20:
            real = env.kube.create(probe, as_user=user)
            if real.ok:
                leaked += 1
                env.kube.delete(probe, wait=5)
            elif real.status in (403, 422) and message in real.message:
                notes.append(f"{label}: {user}: dry-run admitted; real write denied (HTTP {real.status}: "
                             f"{one_line(real.message, 160)}) after {time.monotonic() - began:.1f} s"
                             + (f", {leaked} write(s) got through before the policy was loaded" if leaked else ""))
                return problems
            else:
                return problems + [f"{label}: a real write by {user} failed otherwise: HTTP {real.status} {one_line(real.message, 200)}"]
            time.sleep(0.5)
        return problems + [f"{label}: a real write by {user} was never denied in 20 s ({leaked} got through)"]
    finally:
        for doc in reversed(applied):
            env.kube.delete(doc, wait=10)


def _state_objects(stack: Any) -> list[dict[str, Any]]:
    """Kubernetes objects (and the Helm release) in the stack's state: {kind, apiVersion, name, namespace, retain}."""
    out = []
    for res in stack.export_stack().deployment.get("resources", []):
        t = res.get("type", "")
        if not t.startswith("kubernetes:") or t.startswith("pulumi:providers"):
            continue
        outputs = res.get("outputs") or {}
        if res.get("external"):
            continue  # a read (`get`): never created, never deleted
        if t == "kubernetes:helm.sh/v3:Release":
            out.append({"type": t, "name": outputs.get("name"), "namespace": outputs.get("namespace"),
                        "retain": bool(res.get("retainOnDelete"))})
            continue
        meta = outputs.get("metadata") or {}
        out.append({"type": t, "apiVersion": outputs.get("apiVersion"), "kind": outputs.get("kind"),
                    "name": meta.get("name"), "namespace": meta.get("namespace"), "retain": bool(res.get("retainOnDelete"))})
    return out


def _exists(env: Env, o: dict[str, Any]) -> bool:
    if o["type"] == "kubernetes:helm.sh/v3:Release":
        return bool(env.kube.list("v1", "Secret", o["namespace"], f"owner=helm,name={o['name']}"))
    obj = {"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": {"name": o["name"], "namespace": o["namespace"]}}
    if o["kind"] == "CustomResourceDefinition" or "kyverno.io" in (o["apiVersion"] or ""):
        env.kube.forget_discovery()
    return env.kube.get(obj).ok


def scenario_security_off(env: Env) -> Result:
    before = _state_objects(env.stack)
    env.stack.set_config(f"{PROJECT}:security", env.pulumi.auto.ConfigValue(value="false"))
    try:
        run = env.pulumi.run(env.stack, "up")
    finally:
        env.stack.set_config(f"{PROJECT}:security", env.pulumi.auto.ConfigValue(value="true"))
    if not run.ok:
        return Result("security-off", False, run.error_text())
    env.kube.forget_discovery()
    left = [o for o in before if not o["retain"] and _exists(env, o)]
    gone = [o for o in before if o["retain"] and not _exists(env, o)]
    after = _state_objects(env.stack)
    label = lambda o: f"{o.get('kind') or 'Release'} {o['namespace'] + '/' if o.get('namespace') else ''}{o['name']}"  # noqa: E731
    kept = [label(o) for o in before if o["retain"]]
    notes = [f"{_changes(run.changes)} in {run.seconds:.1f} s; {len(before) - len(kept)} objects removed, "
             f"{len(kept)} retained: {', '.join(kept)}"]
    problems = []
    if left:
        problems.append(f"{len(left)} object(s) still in the cluster: {', '.join(label(o) for o in left[:8])}")
    if gone:
        problems.append(f"retained namespace(s) deleted: {', '.join(label(o) for o in gone)}")
    if after:
        problems.append(f"still in the stack: {', '.join(label(o) for o in after[:8])}")
    if problems:
        return Result("security-off", False, one_line("; ".join(problems)), notes)
    return Result("security-off", True, notes=notes)


def leftovers(env: Env) -> list[str]:
    """What a destroyed stack left that is Kyverno's or a webhook, or that would make a re-install fail."""
    env.kube.forget_discovery()
    out = []
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for item in env.kube.list("admissionregistration.k8s.io/v1", kind):
            if item["metadata"]["name"] not in env.baseline_webhooks:
                out.append(f"{kind} {item['metadata']['name']}")
    for item in env.kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition"):
        if item["metadata"]["name"].endswith(("kyverno.io", "wgpolicyk8s.io")):
            out.append(f"CRD {item['metadata']['name']}")
    if env.kube.request("GET", "/api/v1/namespaces/kyverno").ok:
        out.append("Namespace kyverno")
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        for item in env.kube.list("rbac.authorization.k8s.io/v1", kind):
            if item["metadata"]["name"].startswith("kyverno"):
                out.append(f"{kind} {item['metadata']['name']}")
    for item in env.kube.list("v1", "Secret", None, "owner=helm"):
        out.append(f"Helm release secret {item['metadata']['namespace']}/{item['metadata']['name']}")
    return out


def scenario_destroy_clean(env: Env) -> Result:
    run = env.pulumi.run(env.stack, "destroy")
    if not run.ok:
        return Result("destroy-clean", False, run.error_text())
    notes = [f"destroy in {run.seconds:.1f} s"]
    left = leftovers(env)
    if left:
        return Result("destroy-clean", False, f"left behind: {', '.join(left[:10])}", notes)
    # Nothing blocks a re-install: the same stack, security on, up again from nothing, then destroyed again.
    again = env.pulumi.run(env.stack, "up")
    if not again.ok:
        return Result("destroy-clean", False, f"re-install failed: {again.error_text()}", notes)
    notes.append(f"re-install: {_changes(again.changes)} in {again.seconds:.1f} s")
    second = env.pulumi.run(env.stack, "destroy")
    if not second.ok:
        return Result("destroy-clean", False, f"second destroy failed: {second.error_text()}", notes)
    left = leftovers(env)
    if left:
        return Result("destroy-clean", False, f"left behind after the re-install's destroy: {', '.join(left[:10])}", notes)
    notes.append("no webhook configuration, Kyverno CRD, namespace, cluster role or Helm release left (Kyverno never ran "
                 "here, so it never wrote webhook configurations of its own: the destroy-time kubectl cleanup is not exercised)")
    return Result("destroy-clean", True, notes=notes)


def scenario_first_deploy_plan(env: Env) -> Result:
    """.github/workflows/deploy.yaml's sequence (tools/deploy.py: gated, saved plans; a first phase while a
    provider is unknown) on a stack whose kubeconfig a resource produces."""
    from tools import deploy

    env.pulumi.write_config(PLAN_STACK, env.cfg)
    stack = env.pulumi.stack(PLAN_STACK, unknown_kubeconfig_program(env.kubeconfig.read_text()))
    notes: list[str] = []

    class Auto:
        def preview(self, plan: pathlib.Path, targets: Sequence[str]) -> dict[str, Any]:
            run = env.pulumi.run(stack, "preview", plan=str(plan), json=True, target=list(targets) or None)
            if not run.ok:
                raise deploy.DeployError(f"preview --save-plan failed: {run.error_text()}")
            digest: dict[str, Any] = json.loads(run.stdout)
            creates = sum(1 for s in digest.get("steps", []) if s.get("op") == "create")
            notes.append(f"preview{' (first phase)' if targets else ''}: {creates} creates")
            return digest

        def up(self, plan: pathlib.Path, targets: Sequence[str]) -> None:
            run = env.pulumi.run(stack, "up", plan=str(plan), target=list(targets) or None)
            if not run.ok:
                shown = [e for e in run.errors if "violates plan" in e] or run.errors
                more = f" (+{len(shown) - 2} more)" if len(shown) > 2 else ""
                raise deploy.DeployError(one_line(f"up --plan: {'; '.join(shown[:2])}{more}", 900))
            notes.append(f"up --plan{' (first phase)' if targets else ''}: {_changes(run.changes)} in {run.seconds:.1f} s")

    log = env.base / f"deploy-{PLAN_STACK}.log"
    try:
        with log.open("w", encoding="utf-8") as fh:
            outcome = deploy.deploy(Auto(), env.base, fh)
    except deploy.DeployError as err:
        return Result("first-deploy-plan", False, str(err), notes)
    notes.append(f"deployed in {outcome.phases} phase(s)")
    if outcome.phases != 2:
        return Result("first-deploy-plan", False, "the kubeconfig was known at the first preview: the scenario "
                      "no longer models a first deploy", notes)
    return Result("first-deploy-plan", True, notes=notes)


def scenario_apiserver_parity(env: Env) -> Result:
    """Every rule of tools/apiserver.py (kept or retired) against the real provider and API server."""
    from tools import e2e_model

    chart = str(e2e_model.write_chart(env.base / "model-chart"))
    for ns in (e2e_model.EXISTING, e2e_model.ADOPTED, e2e_model.HELM_NS):
        env.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    env.pulumi.write_config(e2e_model.STACK, {})
    stack = env.pulumi.stack(e2e_model.STACK, e2e_model.program(str(env.kubeconfig), CONTEXT, chart))
    notes: list[str] = []
    try:
        run = env.pulumi.run(stack, "up", continue_on_error=True)
        failed = {urn.rsplit("::", 1)[-1]: one_line(messages[0], 220) for urn, messages in run.by_urn.items()}
        rows, problems = e2e_model.compare(chart, failed)
        notes += rows
        # The retired `unknown` rule: an object whose name is unknown at preview.
        env.pulumi.write_config(e2e_model.UNKNOWN_STACK, {})
        unknown = env.pulumi.stack(e2e_model.UNKNOWN_STACK, e2e_model.unknown_program(str(env.kubeconfig), CONTEXT))
        preview = env.pulumi.run(unknown, "preview")
        model = e2e_model.model_verdicts(chart)["unknown-name"]
        notes.append(f"unknown | namespace whose name is unknown at preview | model {'refused ' + str(model) if model else 'allowed'}; "
                     f"real preview {'succeeded: ' + _changes(preview.changes) if preview.ok else 'failed: ' + preview.error_text()} | "
                     "retire: the real preview does not refuse it (no dry-run for that object); the preview test requires "
                     "every Kubernetes input known")
        if not preview.ok or model:
            problems.append("namespace with an unknown name: the real preview and the model must both let it through")
        notes += [f"{rule} | not runnable here | keep: {why}" for rule, why in e2e_model.NOT_RUNNABLE.items()]
    finally:
        env.pulumi.run(stack, "destroy")
        for ns in (e2e_model.EXISTING, e2e_model.ADOPTED, e2e_model.HELM_NS, e2e_model.NEW, e2e_model.MISSING):
            env.kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    if problems:
        return Result("apiserver-parity", False, one_line(f"{len(problems)} case(s) decided otherwise: " + " | ".join(problems[:4]), 900),
                      problems + notes)
    return Result("apiserver-parity", True, notes=notes)


def scenario_declared_tenants(env: Env) -> Result:
    """Declared pre-existing tenant namespaces (createTenantNamespaces: false): a missing one fails the preview
    and the `up` at its read, and is not created; once it exists, the patch labels it; the destroy removes the
    labels and keeps the namespaces."""
    from tools import e2e_tenants as et

    notes: list[str] = []
    problems: list[str] = []
    ns = lambda name: {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}  # noqa: E731

    def labelled(name: str) -> Optional[bool]:
        r = env.kube.request("GET", f"/api/v1/namespaces/{name}")
        return None if not r.ok else et.LABEL in ((r.body.get("metadata") or {}).get("labels") or {})

    env.kube.create(ns(et.PRESENT))
    env.kube.delete(ns(et.MISSING), wait=60)
    env.pulumi.write_config(et.STACK, {})
    stack = env.pulumi.stack(et.STACK, et.program(str(env.kubeconfig), CONTEXT, [et.PRESENT, et.MISSING]))
    try:
        for op in ("preview", "up"):
            run = env.pulumi.run(stack, op)
            failures = et.read_failures(run.by_urn, et.MISSING)
            if run.ok or not any(et.NOT_FOUND in f for f in failures):
                problems.append(f"{op} with {et.MISSING} missing: {'succeeded' if run.ok else 'failed otherwise: ' + run.error_text()}")
            else:
                notes.append(f"{op} with {et.MISSING} missing: failed at its read: {one_line(failures[0], 200)}")
            if labelled(et.MISSING) is not None:
                problems.append(f"{op} with {et.MISSING} missing: the namespace exists afterwards (the patch created it)")
        notes.append(f"after the failed up: {et.MISSING} still absent; {et.PRESENT} "
                     f"{'labelled (its patch ran alongside the failed read)' if labelled(et.PRESENT) else 'not labelled'}")
        env.kube.create(ns(et.MISSING))
        run = env.pulumi.run(stack, "up")
        if not run.ok:
            problems.append(f"up with both namespaces present failed: {run.error_text()}")
        elif not (labelled(et.PRESENT) and labelled(et.MISSING)):
            problems.append(f"up with both namespaces present: {et.LABEL} not on both")
        else:
            notes.append(f"up with both present: {_changes(run.changes)}, both labelled {et.LABEL}")
        run = env.pulumi.run(stack, "destroy")
        after = (labelled(et.PRESENT), labelled(et.MISSING))
        if not run.ok or after != (False, False):
            problems.append(f"destroy: {'ok' if run.ok else run.error_text()}; labelled afterwards {after} "
                            "(None: the namespace is gone; the labels must go, the namespaces stay)")
        else:
            notes.append("destroy: the labels removed, both namespaces kept")
        # The whole program, same setting, one more tenant that does not exist: its preview fails at that read.
        env.kube.delete(ns(et.MISSING), wait=60)
        env.pulumi.write_config(et.PROGRAM_STACK, et.program_config(env.cfg, PROJECT))
        whole = env.pulumi.stack(et.PROGRAM_STACK, project_program)
        run = env.pulumi.run(whole, "preview")
        failures = et.read_failures(run.by_urn, et.MISSING)
        if run.ok or not any(et.NOT_FOUND in f for f in failures):
            problems.append(f"the program's preview with tenant {et.MISSING} missing: "
                            f"{'succeeded' if run.ok else 'failed otherwise: ' + run.error_text()}")
        else:
            notes.append(f"the program's preview (createTenantNamespaces: false, tenant {et.MISSING} missing): failed at "
                         f"its read: {one_line(failures[0], 200)}")
    finally:
        env.pulumi.run(stack, "destroy")
        for name in (et.PRESENT, et.MISSING):
            env.kube.delete(ns(name), wait=60)
    if problems:
        return Result("declared-tenants", False, one_line("; ".join(problems), 900), notes)
    return Result("declared-tenants", True, notes=notes)


RUNNERS: dict[str, Callable[[Env], Result]] = {
    "preview": scenario_preview,
    "up": scenario_up,
    "up-idempotent": scenario_up_idempotent,
    "pod-security": scenario_pod_security,
    "webhook-config": scenario_webhook_config,
    "security-off": scenario_security_off,
    "destroy-clean": scenario_destroy_clean,
    "first-deploy-plan": scenario_first_deploy_plan,
    "apiserver-parity": scenario_apiserver_parity,
    "declared-tenants": scenario_declared_tenants,
}


def versions() -> str:
    from tools import cluster as kc

    try:
        cli = subprocess.run(["pulumi", "version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except FileNotFoundError:
        raise E2EError("pulumi not found on PATH: run `make pulumi-engines` and use `make e2e` (it puts the engines on PATH)") from None
    provider = shutil.which("pulumi-resource-kubernetes")
    if provider is None:
        raise E2EError("pulumi-resource-kubernetes not found on PATH: run `make pulumi-engines` and use `make e2e`")
    return (f"Pulumi CLI {cli} driving __main__.py as an Automation API inline program (no pulumi-language-python); "
            f"kubernetes provider {provider} (whatever version the SDK asks for); kube-apiserver {kc.kube_version()} "
            "(no kubelet: pods are admitted, never run)")


def print_notes(result: Result) -> None:
    for note in result.notes:
        print(f"    {note}")


def setup(base: pathlib.Path, cluster_dir: pathlib.Path, engines: pathlib.Path, timeout: float) -> Env:
    """Versions, the chart copy, the control plane, the workspace and the `e2e` stack."""
    from components.kyverno import helm_values
    from tools import cluster as kc
    from tools.e2e_kube import Kube

    print(f"e2e: {versions()}", flush=True)
    cfg = stack_config(str(cluster_dir / "kubeconfig"), str(base / "chart" / "kyverno"))
    settings = settings_of(cfg)
    (base / "chart").mkdir()
    module = kyverno_module_dir()
    chart, dropped = prepare_chart(module, base / "chart", helm_values(settings.kyverno, settings.guardrails.enabled))
    print(f"e2e: Kyverno chart {CHART_NOTE.format(module=module.name, dropped=', '.join(dropped) or 'none')}", flush=True)
    print(f"e2e: {STACK_NOTE}", flush=True)
    t0 = time.monotonic()
    print(f"e2e: control plane {kc.up(cluster_dir, engines, {}, timeout)}", flush=True)
    kube = Kube(str(cluster_dir / "kubeconfig"), CONTEXT)
    # GKE Sandbox's RuntimeClass (what GKE creates with a sandbox node pool; existingCluster.gkeSandbox).
    kube.create({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "gvisor"}, "handler": "runsc"})
    logs = base / "logs"
    logs.mkdir()
    pulumi = Pulumi(base / "pulumi", logs)
    config_file = pulumi.write_config(STACK, cfg)
    env = Env(base, cluster_dir / "kubeconfig", kube, pulumi, cfg, config_file, pulumi.stack(STACK, project_program),
              settings, cluster_seconds=time.monotonic() - t0)
    env.baseline_webhooks = {i["metadata"]["name"] for k in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
                             for i in kube.list("admissionregistration.k8s.io/v1", k)}
    return env


CHART_NOTE = ("3.8.1 from the Go module {module} (engines/kyverno/go.mod), copied: its Chart.yaml names subcharts that "
              "are not in its charts/ and Helm refuses that even for disabled ones; dropped, each disabled by our "
              "values: {dropped}")
STACK_NOTE = ("stack `e2e` = Pulumi.dev.yaml without gcp:project, cluster, networkPolicyLogging; existingCluster = the "
              "local control plane; kyverno.install = {chartPath: the copy, skipAwait: true, kubectlCommands: false} "
              "(no Kyverno pod can run without a kubelet; no pulumi-command provider); no CrossGuard policy pack (no "
              "Python analyzer plugin here)")


def run_scenarios(env: Env, todo: Sequence[str], results: list[Result]) -> None:
    needs = dict(SCENARIOS)
    for name in todo:
        missing = [n for n in needs[name] if not env.done.get(n)]
        if missing:
            result = Result(name, False, f"not run: {', '.join(missing)} did not pass")
        else:
            t = time.monotonic()
            try:
                result = RUNNERS[name](env)
            except Exception as err:  # a scenario's own bug or an unexpected answer: reported, the run goes on
                result = Result(name, False, one_line(f"{type(err).__name__}: {err}"))
            result.notes.append(f"({time.monotonic() - t:.1f} s)")
        env.done[name] = result.ok
        results.append(result)
        print(result.line(), flush=True)
        print_notes(result)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    todo = selected(args.only)
    if args.list:
        print("\n".join(todo))
        print(yaml_io.dump({"config": stack_config("<cluster dir>/kubeconfig", "<chart copy>")}, sort_keys=True))
        return 0
    from tools import cluster as kc

    results: list[Result] = []
    began = time.monotonic()
    base = pathlib.Path(tempfile.mkdtemp(prefix="llm-platform-e2e-"))
    cluster_dir = base / "cluster"
    engines = kc.engines_dir(kc.kube_version())
    env: Optional[Env] = None
    try:
        with kc.sigterm_as_exit():
            env = setup(base, cluster_dir, engines, args.timeout)
            run_scenarios(env, todo, results)
            print(f"e2e: control plane start {env.cluster_seconds:.1f} s; total {time.monotonic() - began:.1f} s", flush=True)
    except (Exception, KeyboardInterrupt, SystemExit) as err:
        why = "interrupted" if isinstance(err, (KeyboardInterrupt, SystemExit)) else f"{type(err).__name__}: {err}"
        print(f"e2e: {one_line(why)}", file=sys.stderr, flush=True)
        current = len(results)  # the scenario that was running (after setup), if any
        for name in todo[current:]:
            status = "not run: setup failed: " if env is None else ("" if name == todo[current] else "not run: ")
            results.append(Result(name, False, one_line(f"{status}{why}", 300)))
            print(results[-1].line(), flush=True)
    finally:
        if env is not None:
            env.kube.close()
        if args.keep_logs:
            for src, name in ((base / "logs", "pulumi"), (cluster_dir / "logs", "cluster")):
                if src.is_dir():
                    shutil.copytree(src, args.keep_logs / name, dirs_exist_ok=True)
        try:
            print(f"e2e: control plane {kc.down(cluster_dir, engines)}", flush=True)
        except kc.ClusterError as err:
            print(f"e2e: control plane: {err}", file=sys.stderr)
        # Whatever else this run started and is still running (the Pulumi CLI and its plugins after an interruption).
        with contextlib.suppress(kc.ClusterError):
            stopped = stop_descendants()
            if stopped:
                print(f"e2e: stopped {stopped} leftover process(es) of this run", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)
    for r in results:
        if r.name in args.known_failure and r.ok:
            print(f"e2e: {r.name} passes now; it was given as --known-failure: drop the flag", flush=True)
    print(summary(results, args.known_failure))
    return exit_code(results, args.known_failure)


if __name__ == "__main__":
    sys.exit(main())
