"""The deploy sequence of .github/workflows/deploy.yaml: every `up` runs a gated, saved plan, the first one too.

    python -m tools.deploy --stack dev [--policy-pack policies/crossguard]

A plan saved while a provider's configuration is unknown (the first deploy: the Kubernetes providers'
kubeconfig comes from the GKE cluster, which does not exist yet) records raw inputs for what that provider
manages, and `up --plan` then stops with "violates plan" once the configured provider checks them (the Helm
release gains its defaults). So:

1. preview the whole stack (--json, --save-plan) and run the replacement gate on it;
2. if a provider's inputs are unknown in that preview, deploy first only what the known providers manage
   (a targeted preview, gated and saved, then `up --plan` with the same targets: the cloud resources), then
   preview the whole stack again, now with every provider known;
3. `up --plan` the last saved plan. A provider still unknown at that point is an error, never an ungated up.

Later deploys, with the cluster in place, take step 1 and 3 only. Each `up` can do no more than the preview
the gate read.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

from tools import replacement_gate

# How the engine writes a value it does not know yet (pulumi/sdk/go/common/resource/plugin: UnknownStringValue).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
PROVIDER_PREFIX = "pulumi:providers:"


class DeployError(RuntimeError):
    """The sequence stopped: a failed command, a refused gate, or a provider still unknown."""


class Pulumi(Protocol):
    def preview(self, plan: pathlib.Path, targets: Sequence[str]) -> dict[str, Any]:
        """`pulumi preview --json --save-plan plan [--target ...]`: the preview digest."""

    def up(self, plan: pathlib.Path, targets: Sequence[str]) -> None:
        """`pulumi up --yes --plan plan [--target ...]`."""


def _has_unknown(value: Any) -> bool:
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False


def _state(step: dict[str, Any]) -> dict[str, Any]:
    return step.get("newState") or step.get("oldState") or {}


def unknown_providers(digest: dict[str, Any]) -> list[str]:
    """URNs of the providers whose configuration the preview does not know."""
    return [step["urn"] for step in digest.get("steps", [])
            if str(_state(step).get("type", "")).startswith(PROVIDER_PREFIX)
            and _has_unknown(_state(step).get("inputs"))]


def known_targets(digest: dict[str, Any], unknown: Sequence[str]) -> list[str]:
    """The resources a first phase deploys: every custom resource, provider included, whose provider is known."""
    out = []
    for step in digest.get("steps", []):
        state = _state(step)
        if step["urn"] in unknown or not state.get("custom"):
            continue
        provider = str(state.get("provider") or "").rsplit("::", 1)[0]
        if provider not in unknown:
            out.append(step["urn"])
    return out


def _gate(digest: dict[str, Any], what: str, log: Any) -> None:
    findings = replacement_gate.check(digest)
    for finding in findings:
        print(finding, file=log)
    if replacement_gate.blocking(findings):
        raise DeployError(f"the replacement gate refused {what}: {replacement_gate.HOW_TO_PROCEED}")
    print(f"replacement gate on {what}: OK", file=log)


@dataclass
class Outcome:
    phases: int
    """1: the stack deployed from one gated plan; 2: the known providers' resources first, then the rest."""


def deploy(pulumi: Pulumi, workdir: pathlib.Path, log: Any = sys.stdout) -> Outcome:
    plan = workdir / "deploy.plan.json"
    digest = pulumi.preview(plan, [])
    _gate(digest, "the preview of the whole stack", log)
    unknown = unknown_providers(digest)
    phases = 1
    if unknown:
        phases = 2
        targets = known_targets(digest, unknown)
        print(f"providers unknown until the first phase ran: {', '.join(u.rsplit('::', 1)[-1] for u in unknown)}; "
              f"first phase: {len(targets)} resources", file=log)
        first = workdir / "first-phase.plan.json"
        _gate(pulumi.preview(first, targets), "the first phase", log)
        pulumi.up(first, targets)
        digest = pulumi.preview(plan, [])
        _gate(digest, "the preview of the whole stack after the first phase", log)
        still = unknown_providers(digest)
        if still:
            raise DeployError(f"providers still unknown after the first phase: {', '.join(still)}")
    pulumi.up(plan, [])
    return Outcome(phases)


class Cli:
    """The Pulumi CLI in this directory (deploy.yaml)."""

    def __init__(self, stack: str, policy_pack: Optional[str]):
        self.stack, self.policy_pack = stack, policy_pack

    def _common(self, targets: Sequence[str]) -> list[str]:
        args = ["--stack", self.stack] + [f"--target={t}" for t in targets]
        return args + (["--policy-pack", self.policy_pack] if self.policy_pack else [])

    def preview(self, plan: pathlib.Path, targets: Sequence[str]) -> dict[str, Any]:
        proc = subprocess.run(["pulumi", "preview", "--json", "--save-plan", str(plan), *self._common(targets)],
                              capture_output=True, text=True, check=False)
        pathlib.Path(f"preview-{self.stack}{'-first-phase' if targets else ''}.json").write_text(proc.stdout)
        if proc.returncode != 0:
            raise DeployError(f"pulumi preview failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return json.loads(proc.stdout)

    def up(self, plan: pathlib.Path, targets: Sequence[str]) -> None:
        proc = subprocess.run(["pulumi", "up", "--yes", "--plan", str(plan), *self._common(targets)], check=False)
        if proc.returncode != 0:
            raise DeployError(f"pulumi up --plan failed (exit {proc.returncode})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__.splitlines()[0])
    ap.add_argument("--stack", required=True)
    ap.add_argument("--policy-pack", help="CrossGuard pack run on every preview and up")
    ap.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("."), help="where the plans are written")
    args = ap.parse_args(argv)
    try:
        outcome = deploy(Cli(args.stack, args.policy_pack), args.workdir)
    except DeployError as err:
        print(f"deploy: {err}", file=sys.stderr)
        return 1
    print(f"deploy: done in {outcome.phases} phase(s), each from a gated, saved plan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
