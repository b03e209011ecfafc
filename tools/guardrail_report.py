"""Real-workload report: the stack's guardrail catalog, in Audit, against the reference platform's manifests.

`make synth` writes OUT/guardrails-report.md when the stack enables the catalog. The
policies evaluated are exactly the rendered ClusterPolicies and PolicyExceptions of the
stack (tools/kyverno_eval.py, real CEL via cel-expr-python); every rule is evaluated as
Audit, whatever the stack's failure action. The workloads are the model servers, demo and
benchmark Jobs and routing manifests in `<shared>/reference-platform/{serving,workloads,
benchmarks,routing}`; `<shared>` is $LLM_PLATFORM_SHARED, default `../shared` next to the
project. When it is absent the report says so and how to get the same files.

Each manifest's namespace is its metadata.namespace, else the `namespace:` of the
kustomization.yaml in its folder, else `default` (what `kubectl apply` would use).
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import yaml

from components import pod_templates, yaml_io

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = ("serving", "workloads", "benchmarks", "routing")
POD_KINDS = set(pod_templates.kind_names())
UPSTREAM = ("github.com/ahmedwaleedmalik/k8s-llm-inference-platform at commit "
            "441dd0a3a57db32484e853db7281dc787b1189d8 (folders serving/, workloads/, benchmarks/, routing/)")


def shared_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("LLM_PLATFORM_SHARED", str(ROOT.parent / "shared")))


def reference_dir() -> pathlib.Path:
    return shared_dir() / "reference-platform"


@dataclass
class Manifest:
    path: str
    obj: dict[str, Any]

    @property
    def ref(self) -> str:
        m = self.obj.get("metadata", {})
        return f"{self.obj.get('kind')} {m.get('namespace', '')}/{m.get('name', '')}"


def _kustomize_namespace(folder: pathlib.Path) -> Optional[str]:
    k = folder / "kustomization.yaml"
    if k.is_file():
        with k.open(encoding="utf-8") as fh:
            doc = yaml_io.load(fh) or {}
        return doc.get("namespace")
    return None


def load_manifests(base: pathlib.Path) -> list[Manifest]:
    """Every Kubernetes object (apiVersion + kind + metadata.name) under the four folders."""
    out = []
    for folder in FOLDERS:
        for path in sorted((base / folder).rglob("*.yaml")):
            if path.name == "kustomization.yaml":
                continue
            try:
                with path.open(encoding="utf-8") as fh:
                    docs = [d for d in yaml_io.load_all(fh) if isinstance(d, dict)]
            except yaml.YAMLError:
                continue
            for doc in docs:
                if not (doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name")):
                    continue  # Helm values, patches without identity, other files
                if "/overlays/" in path.as_posix():
                    continue  # kustomize patches: partial objects, applied on top of the base
                if doc["kind"] != "Namespace" and not doc["metadata"].get("namespace"):
                    doc["metadata"]["namespace"] = _kustomize_namespace(path.parent) or "default"
                out.append(Manifest(path.relative_to(base).as_posix(), doc))
    return out


@dataclass
class Finding:
    policy: str
    rule: str
    manifest: Manifest
    result: str
    message: str


# A decision: (policy, rule, object, namespace labels, exceptions) -> (result, message), e.g. the Kyverno CLI's
# decisions replayed by `make kyverno-test`. None: the offline evaluator decides.
Decide = Callable[[dict, dict, dict, dict, list], tuple[str, str]]


def evaluate(policies: list[dict], exceptions: list[dict], manifests: list[Manifest],
             decide: Optional[Decide] = None) -> list[Finding]:
    from tools import kyverno_eval

    ns_labels = {m.obj["metadata"]["name"]: dict(m.obj["metadata"].get("labels") or {})
                 for m in manifests if m.obj["kind"] == "Namespace"}
    out = []
    for policy in policies:
        kyverno_eval.check_policy_supported(policy)
        for rule in policy["spec"]["rules"]:
            for m in manifests:
                if decide is not None:
                    result, message = decide(policy, rule, m.obj, ns_labels, exceptions)
                    out.append(Finding(policy["metadata"]["name"], rule["name"], m, result, message))
                    continue
                outcome = kyverno_eval.evaluate_rule(rule, m.obj, "CREATE", ns_labels=ns_labels, policy=policy,
                                                     exceptions=exceptions)
                # a CEL error is a fail in Kyverno; the report keeps it in a column of its own
                out.append(Finding(policy["metadata"]["name"], rule["name"], m,
                                   "error" if outcome.error else outcome.result, outcome.message))
    return out


def _scope(policy: dict) -> str:
    (flt,) = policy["spec"]["rules"][0]["match"]["any"]
    res = flt["resources"]
    parts = []
    if "namespaces" in res:
        parts.append("ns " + ", ".join(res["namespaces"]))
    for key in ("namespaceSelector", "selector"):
        if key in res:
            parts.append(f"{key} " + ", ".join(f"{k}={v}" for k, v in res[key].get("matchLabels", {}).items()))
    return "; ".join(parts)


EVALUATOR = ("Evaluated by tools/kyverno_eval.py (cel-expr-python); `make kyverno-test` replays every one of these "
             "decisions through the Kyverno CLI built from the pinned module, fails on any difference and writes "
             "this report again from the CLI's decisions (docs/real-engines.md).")


def render_markdown(stack: str, policies: list[dict], exceptions: list[dict],
                    base: Optional[pathlib.Path] = None, decide: Optional[Decide] = None,
                    engine: str = EVALUATOR) -> str:
    """The report; `decide` and `engine` (the sentence naming who decided) replace the offline evaluator."""
    base = base or reference_dir()
    lines = [f"# Guardrail catalog on the reference platform (stack `{stack}`, all rules in Audit)", ""]
    if not base.is_dir():
        lines += [f"Skipped: the reference platform is not at `{base}`. Set LLM_PLATFORM_SHARED to the folder "
                  f"holding `reference-platform/`, or check out {UPSTREAM} into `<dir>/reference-platform/`.", ""]
        return "\n".join(lines)
    manifests = load_manifests(base)
    try:
        findings = evaluate(policies, exceptions, manifests, decide)
    except ImportError as err:  # cel-expr-python comes with requirements-dev.txt (make venv installs it)
        lines += [f"Skipped: the CEL engine is not installed ({err}); `make venv` installs requirements-dev.txt.", ""]
        return "\n".join(lines)
    workloads = [m for m in manifests if m.obj["kind"] in POD_KINDS]
    lines += [
        f"Source: `{base}` ({UPSTREAM}). {len(manifests)} objects read, {len(workloads)} of them "
        f"Pod-bearing workloads ({', '.join(pod_templates.kind_names())}). "
        f"{engine} A CEL error counts as a fail in Kyverno; it has its own column here.", "",
        "## Summary", "",
        "| policy | rule | scope | action in this stack | pass | fail | error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for policy in policies:
        for rule in policy["spec"]["rules"]:
            fs = [f for f in findings if f.policy == policy["metadata"]["name"] and f.rule == rule["name"]]
            count = {r: sum(f.result == r for f in fs) for r in ("pass", "fail", "error")}
            action = rule.get("validate", {}).get("failureAction", "generate")
            lines.append(f"| {policy['metadata']['name']} | {rule['name']} | {_scope(policy)} | {action} | "
                         f"{count['pass']} | {count['fail']} | {count['error']} |")
    lines += ["", "## Findings (fail / error)", "",
              "| workload | file | policy / rule | why |", "| --- | --- | --- | --- |"]
    bad = [f for f in findings if f.result in ("fail", "error")]
    for f in sorted(bad, key=lambda f: (f.manifest.ref, f.policy, f.rule)):
        lines.append(f"| {f.manifest.ref} | {f.manifest.path} | {f.policy} / {f.rule} | "
                     f"{f.result}: {f.message} |")
    if not bad:
        lines.append("| (none) | | | |")
    generated = [f for f in findings if f.result == "pass" and f.manifest.obj["kind"] == "Namespace"
                 and any(r.get("generate") for p in policies if p["metadata"]["name"] == f.policy
                         for r in p["spec"]["rules"])]
    lines += ["", "## Generated NetworkPolicies (egress lockdown)", ""]
    lines += [f"- {f.manifest.ref}: {f.message}" for f in generated] or [
        "- none: no reference Namespace carries the lockdown label"]
    in_scope = {f.manifest.ref for f in findings if f.result != "skip"}
    out_of_scope = [m for m in workloads if m.ref not in in_scope]
    lines += ["", "## Workloads no rule matched (out of every policy's scope)", ""]
    lines += [f"- {m.ref} ({m.path})" for m in out_of_scope] or ["- none"]
    crds = sorted({m.obj["kind"] for m in manifests
                   if m.obj["kind"] not in POD_KINDS | {"Namespace", "Service", "PersistentVolumeClaim"}})
    lines += ["", "## Not evaluated", "",
              "Custom resources whose Pods are created by an operator are checked when those Pods are admitted, "
              f"not here: {', '.join(crds)}.", ""]
    return "\n".join(lines)


def report_inputs(k8s_objects: list[dict]) -> tuple[list[dict], list[dict]]:
    """The guardrail ClusterPolicies (validate and generate) and PolicyExceptions of a render, in a stable order."""
    # Mutations (guardrail-stamp-owner) change objects, they report nothing: not evaluated here.
    policies = [o for o in k8s_objects if o["kind"] == "ClusterPolicy"
                and o["metadata"]["name"].startswith("guardrail-")
                and not any("mutate" in r for r in o["spec"]["rules"])]
    # Registration order is not deterministic; the report is.
    policies.sort(key=lambda p: p["metadata"]["name"])
    exceptions = sorted((o for o in k8s_objects if o["kind"] == "PolicyException"),
                        key=lambda e: e["metadata"]["name"])
    return policies, exceptions


def write_report(stack: str, k8s_objects: list[dict], out: pathlib.Path) -> Optional[pathlib.Path]:
    """Write OUT/guardrails-report.md if the render contains guardrail policies."""
    policies, exceptions = report_inputs(k8s_objects)
    if not policies:
        return None
    path = out / "guardrails-report.md"
    path.write_text(render_markdown(stack, policies, exceptions), encoding="utf-8")
    return path
