"""Replacement gate for PR checks: fail when `pulumi preview --json` would replace or delete the
GKE cluster or a node pool, or replace a protected resource.

    pulumi preview --stack prod --json > preview.json
    python -m tools.replacement_gate preview.json      # or: ... | python -m tools.replacement_gate -

Exit codes: 0 safe, 1 dangerous steps found (each printed with URN, op, reasons, why), 2 the input is
not a `pulumi preview --json` document. The JSON shape is pulumi's display.PreviewDigest:
`steps[]` with `op`, `urn`, `oldState`/`newState` (ResourceV3: `type`, `protect`, ...),
`replaceReasons`, `diffReasons`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Optional, TextIO

CLUSTER_TYPES = {
    "gcp:container/cluster:Cluster": "the GKE cluster (and every workload, volume and policy on it)",
    "gcp:container/nodePool:NodePool": "a node pool (its nodes are drained and recreated; GPU capacity may not come back)",
}
REPLACE_OPS = {"replace", "create-replacement", "delete-replaced", "discard-replaced", "import-replacement", "read-replacement"}
DELETE_OPS = {"delete", "discard"}
HOW_TO_PROCEED = (
    "If this is deliberate: set `cluster.allowReplacement: true` in Pulumi.<stack>.yaml in its own PR, "
    "get it reviewed and approved, run `pulumi up` once (this lifts protect and GKE deletion protection), "
    "then make the change, and set allowReplacement back to false afterwards."
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

    def __str__(self) -> str:
        reasons = ", ".join(self.reasons) if self.reasons else "(no property reasons reported)"
        return f"BLOCKED {self.op} {self.urn}\n  reasons: {reasons}\n  why: {self.why}"


def _type_of(step: dict[str, Any]) -> str:
    for state in ("newState", "oldState"):
        typ = (step.get(state) or {}).get("type")
        if typ:
            return typ
    # URN: urn:pulumi:<stack>::<project>::<parent-type$...$type>::<name>
    parts = str(step.get("urn", "")).split("::")
    return parts[2].split("$")[-1] if len(parts) >= 4 else ""


def check(preview: Any) -> list[Finding]:
    """Return the steps of a `pulumi preview --json` document that the gate refuses."""
    if not isinstance(preview, dict) or not isinstance(preview.get("steps", []), list):
        raise GateInputError("not a `pulumi preview --json` document: expected an object with a `steps` list")
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for step in preview.get("steps", []):
        if not isinstance(step, dict) or "op" not in step or "urn" not in step:
            raise GateInputError(f"malformed step (needs `op` and `urn`): {json.dumps(step)[:200]}")
        op, urn = step["op"], step["urn"]
        typ = _type_of(step)
        reasons = tuple(step.get("replaceReasons") or step.get("diffReasons") or ())
        why: Optional[str] = None
        if typ in CLUSTER_TYPES and op in REPLACE_OPS:
            why = f"replacing {CLUSTER_TYPES[typ]}"
        elif typ in CLUSTER_TYPES and op in DELETE_OPS:
            why = f"deleting {CLUSTER_TYPES[typ]}"
        elif op in REPLACE_OPS and (step.get("oldState") or {}).get("protect"):
            why = "replacing a resource marked protected (protect exists to stop exactly this)"
        # One replacement shows up as several steps with --show-replacement-steps: report it once.
        if why and (urn, why) not in seen:
            seen.add((urn, why))
            findings.append(Finding(urn=urn, op=op, resource_type=typ, reasons=reasons, why=why))
    return findings


def main(argv: Optional[list[str]] = None, stdin: TextIO = sys.stdin) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tools.replacement_gate <preview.json | ->", file=sys.stderr)
        return 2
    try:
        text = stdin.read() if args[0] == "-" else open(args[0], encoding="utf-8").read()
        findings = check(json.loads(text))
    except (OSError, json.JSONDecodeError, GateInputError) as err:
        print(f"replacement gate: cannot read the preview: {err}", file=sys.stderr)
        return 2
    if not findings:
        steps = json.loads(text).get("changeSummary", {})
        print(f"replacement gate: OK, no replacement or deletion of the cluster, node pools or protected resources {steps}")
        return 0
    for finding in findings:
        print(finding)
    print(f"\nreplacement gate: {len(findings)} dangerous step(s). {HOW_TO_PROCEED}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
