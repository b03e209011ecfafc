"""Replacement gate for PR checks: fail when `pulumi preview --json` would replace or delete the
GKE cluster or a node pool, or replace a protected resource or a provider.

    pulumi preview --stack prod --json > preview.json
    python -m tools.replacement_gate preview.json      # or: ... | python -m tools.replacement_gate -

Exit codes: 0 safe, 1 dangerous steps found (each printed with URN, op, reasons, why), 2 the input is
not a `pulumi preview --json` document. The JSON shape is pulumi's display.PreviewDigest
(pkg/display/json.go): `config` (key -> string, secrets blinded), `steps[]` with `op`, `urn`,
`oldState`/`newState` (apitype.ResourceV3: `type`, `protect`, `inputs`, ...), `replaceReasons`,
`diffReasons`, `detailedDiff`, and `changeSummary`. Ops are the engine's StepOp values: same, create,
update, delete, replace, create-replacement, delete-replaced, read, read-replacement, refresh, discard,
discard-replaced, remove-pending-replace, import, import-replacement.

A deliberate cluster/node-pool replacement passes (reported as ALLOWED, exit 0) only when the stack
config in the same preview has `cluster.allowReplacement: true` -- a reviewed change in
Pulumi.<stack>.yaml. Replacing any other protected resource is never allowed by this flag.
"""

from __future__ import annotations

import json
import pathlib
import sys
from dataclasses import dataclass
from typing import Any, Optional, TextIO

CLUSTER_TYPES = {
    "gcp:container/cluster:Cluster": "the GKE cluster (and every workload, volume and policy on it)",
    "gcp:container/nodePool:NodePool": "a node pool (its nodes are drained and recreated; GPU capacity may not come back)",
}
REPLACE_OPS = {"replace", "create-replacement", "delete-replaced", "discard-replaced", "import-replacement", "read-replacement"}
DELETE_OPS = {"delete", "discard"}
PROVIDER_TYPE_PREFIX = "pulumi:providers:"
CONFIG_KEY = "llm-platform:cluster"
HOW_TO_PROCEED = (
    "If this is deliberate: set `cluster.allowReplacement: true` in Pulumi.<stack>.yaml in its own PR, "
    "get it reviewed and approved, run `pulumi up` once (this lifts protect and GKE deletion protection), "
    "then make the change in a second PR (the gate reports the cluster/node-pool step as ALLOWED while "
    "the flag is on; plan for the workloads, volumes and policies on the cluster to be recreated), and "
    "set allowReplacement back to false afterwards. A protected resource other than the cluster or a "
    "node pool: remove its `protect` option in a reviewed PR and `pulumi up` that first."
)


class GateInputError(ValueError):
    """The input is not a preview document."""


@dataclass(frozen=True)
class Finding:
    """One step the gate refuses."""

    urn: str
    op: str
    resource_type: str
    reasons: tuple[str, ...]
    why: str
    allowed: bool = False
    replace_paths: tuple[str, ...] = ()
    """detailedDiff property paths whose kind is `*-replace` (e.g. nodeConfig.machineType)."""
    """True when `cluster.allowReplacement: true` is in the previewed stack config (the step is reported, not refused)."""

    def __str__(self) -> str:
        reasons = ", ".join(self.reasons) if self.reasons else "(no property reasons reported)"
        verdict = "ALLOWED (cluster.allowReplacement: true)" if self.allowed else "BLOCKED"
        paths = f"\n  replaced by changes to: {', '.join(self.replace_paths)}" if self.replace_paths else ""
        return f"{verdict} {self.op} {self.urn}\n  reasons: {reasons}{paths}\n  why: {self.why}"


def allow_replacement(preview: dict[str, Any]) -> bool:
    """Whether the previewed stack config sets `cluster.allowReplacement: true`.

    The digest's `config` maps keys to strings (object values as JSON text, secrets as "[secret]");
    anything unreadable counts as not allowed.
    """
    value = (preview.get("config") or {}).get(CONFIG_KEY)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return False
    return isinstance(value, dict) and value.get("allowReplacement") is True


def blocking(findings: list[Finding]) -> list[Finding]:
    """The findings that fail the gate."""
    return [f for f in findings if not f.allowed]


def _type_of(step: dict[str, Any]) -> str:
    for state in ("newState", "oldState"):
        typ = (step.get(state) or {}).get("type")
        if typ:
            return typ
    # URN: urn:pulumi:<stack>::<project>::<parent-type$...$type>::<name>
    parts = str(step.get("urn", "")).split("::")
    return parts[2].split("$")[-1] if len(parts) >= 4 else ""


def _protected(step: dict[str, Any]) -> bool:
    return any((step.get(state) or {}).get("protect") is True for state in ("oldState", "newState"))


def check(preview: Any) -> list[Finding]:
    """Return the dangerous steps of a `pulumi preview --json` document.

    Cluster and node-pool findings carry `allowed=True` when the stack config sets
    `cluster.allowReplacement: true`; every other finding fails the gate (see :func:`blocking`).
    """
    if not isinstance(preview, dict) or not isinstance(preview.get("steps", []), list):
        raise GateInputError("not a `pulumi preview --json` document: expected an object with a `steps` list")
    allowed = allow_replacement(preview)
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for step in preview.get("steps", []):
        if not isinstance(step, dict) or "op" not in step or "urn" not in step:
            raise GateInputError(f"malformed step (needs `op` and `urn`): {json.dumps(step)[:200]}")
        op, urn = step["op"], step["urn"]
        typ = _type_of(step)
        reasons = tuple(step.get("replaceReasons") or step.get("diffReasons") or ())
        diff = step.get("detailedDiff")
        detailed: dict[str, Any] = diff if isinstance(diff, dict) else {}
        paths = tuple(sorted(k for k, v in detailed.items()
                             if isinstance(v, dict) and str(v.get("kind", "")).endswith("-replace")))
        why: Optional[str] = None
        is_cluster = typ in CLUSTER_TYPES
        if is_cluster and op in REPLACE_OPS:
            why = f"replacing {CLUSTER_TYPES[typ]}"
        elif is_cluster and op in DELETE_OPS:
            why = f"deleting {CLUSTER_TYPES[typ]}"
        elif op in REPLACE_OPS and _protected(step):
            why = "replacing a resource marked protected (protect exists to stop exactly this)"
        elif op in REPLACE_OPS and typ.startswith(PROVIDER_TYPE_PREFIX):
            why = ("replacing a provider replaces every resource it manages (for Kubernetes: every object, "
                   "and the recreates fail with AlreadyExists); the providers' clusterIdentifier changes only "
                   "when the cluster itself does")
        # One replacement shows up as several steps with --show-replacement-steps: report it once.
        if why and (urn, why) not in seen:
            seen.add((urn, why))
            findings.append(
                Finding(urn=urn, op=op, resource_type=typ, reasons=reasons, why=why,
                        allowed=is_cluster and allowed, replace_paths=paths)
            )
    return findings


def main(argv: Optional[list[str]] = None, stdin: TextIO = sys.stdin) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tools.replacement_gate <preview.json | ->", file=sys.stderr)
        return 2
    try:
        text = stdin.read() if args[0] == "-" else pathlib.Path(args[0]).read_text(encoding="utf-8")
        preview = json.loads(text)
        findings = check(preview)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, GateInputError) as err:
        where = "stdin" if args[0] == "-" else args[0]
        print(f"replacement gate: cannot read the preview from {where}: {err}. "
              "Expected the output of `pulumi preview --json` (did the preview itself fail?)", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    refused = blocking(findings)
    summary = ", ".join(f"{op}={n}" for op, n in sorted((preview.get("changeSummary") or {}).items())) or "no changes"
    if not refused:
        allowed = f", {len(findings)} deliberate replacement(s) allowed by cluster.allowReplacement" if findings else ""
        print(f"replacement gate: OK ({summary}){allowed}: no replacement or deletion of the cluster, "
              "node pools or protected resources is refused")
        return 0
    print(f"\nreplacement gate: FAILED, {len(refused)} dangerous step(s) ({summary}). {HOW_TO_PROCEED}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
