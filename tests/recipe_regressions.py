"""Recipe regressions: each case must get another verdict from the recipe as written than from the catalog.

The guardrail catalog started from the recipe "Kyverno LLM Inference Cost and Security Guardrails"
(kubernetes.recipes). Its text is GPL-3.0 and stays out of this repository: this tool reads the page from a
checkout of its source repository, pinned below by commit and content hash, extracts its ClusterPolicies as
written, and asks the real engines to decide our regression cases on them:

- validate rules: the Kyverno CLI runs each recipe rule over its regression cases, with *our* verdict as the
  expected result. Every row must fail ("Want pass, got fail" or the reverse): that is the regression. A case
  the recipe does not select is "Excluded", which the CLI counts a pass, so a case that is not selected fails
  this check too. The cases themselves live in our policy folders (``.kyverno-test``) and pass there in
  ``make kyverno-test``; our verdict is read from those folders.
- the egress rule: nca decides what the NetworkPolicy the recipe generates allows, against the catalog's.

Run it with ``make recipe-regressions RECIPE_PAGE=<page>`` (docs/guardrails.md, "Recipe regressions").
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import pathlib
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from components import guardrails, yaml_io
from components.config import StackConfig
from tests import kyverno_parity
from tools import kyverno_eval, nca

ROOT = pathlib.Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies" / "kyverno"
NETPOL_DIR = ROOT / "tests" / "netpol" / "guardrails"

# Where the recipe comes from; the hash pins the text the regressions were measured on.
RECIPE_REPO = "https://github.com/greg4fun/kubernetesrecipes.github.io"
RECIPE_COMMIT = "b1b9c2a2a6644fc07e94210c809a77ed18044f3f"
RECIPE_PATH = "src/content/recipes/kyverno-llm-inference-guardrails.md"
RECIPE_SHA256 = "4a1077d76a475bf0f569da68f19ae378c471de835800da52edc92ea7fe8452eb"
HOW_TO_GET = (f"git clone {RECIPE_REPO} recipes && git -C recipes checkout {RECIPE_COMMIT}; "
              f"then RECIPE_PAGE=recipes/{RECIPE_PATH}")


@dataclass(frozen=True)
class Regression:
    """Cases of one of our policy folders that one recipe rule decides otherwise."""

    recipe_policy: str
    recipe_rule: str
    folder: str
    """Our policy folder whose `.kyverno-test` holds the cases and our verdicts."""
    cases: tuple[str, ...]
    why: str
    """What the recipe gets wrong, in a few words (the docs' table)."""
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Labels of the cases' namespaces, for recipe rules that select by namespaceSelector."""


REGRESSIONS: tuple[Regression, ...] = (
    Regression("llm-gpu-cost-guardrails", "max-gpus-per-inference-pod", "guardrail-gpu-cap-per-pod",
               ("recipe-inference-2-plus-2-gpus", "recipe-inference-cpu-only"),
               "has() on a map index does not compile: every selected Pod fails"),
    Regression("llm-gpu-cost-guardrails", "require-gpu-limits-match-requests", "guardrail-no-accelerator-overcommit",
               ("recipe-inference-gpu-requests-equal-limits",),
               "has() on a map index does not compile: every selected Pod fails"),
    Regression("llm-approved-models", "only-approved-models", "guardrail-approved-models",
               ("vllm-serve-approved", "no-model-server"),
               "flatMap is not Kubernetes CEL: every Pod in a selected namespace fails",
               namespace_labels={"serving": {"purpose": "ai-inference"}}),
    Regression("llm-memory-guardrails", "inference-memory-limits", "guardrail-memory-bounds",
               ("recipe-inference-init-limit-512gi", "recipe-inference-request-split-over-sidecar"),
               "containers only (an initContainer's 512Gi passes); the 2Gi floor per container, not per Pod"),
    Regression("llm-security-context", "inference-security-baseline", "guardrail-security-baseline",
               ("recipe-inference-init-escalation", "recipe-inference-adds-sys-admin",
                "recipe-inference-host-pid"),
               "containers only; added capabilities and hostPID are not checked"),
)
EGRESS_POLICY = ("llm-network-restriction", "generate-egress-restriction")


class RecipeError(RuntimeError):
    """The page is missing, is not the pinned text, or the engines disagree with the claim."""


# ------------------------------------------------------------------------------------ the page

def read_page(path: pathlib.Path) -> str:
    """The pinned page's text; refuse any other text (a regression is measured on the recipe as written)."""
    if not path.is_file():
        raise RecipeError(f"recipe page {path} not found; {HOW_TO_GET}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != RECIPE_SHA256:
        raise RecipeError(f"{path} is not the pinned recipe text (sha256 {digest}, want {RECIPE_SHA256}); "
                          f"{HOW_TO_GET}")
    return data.decode("utf-8")


_YAML_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.M | re.S)


def extract_policies(page: str) -> dict[str, str]:
    """The page's ClusterPolicies by name, each the text of its ```yaml block, unchanged."""
    out: dict[str, str] = {}
    for block in _YAML_BLOCK.findall(page):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and doc.get("kind") == "ClusterPolicy":
            out[doc["metadata"]["name"]] = block
    return out


# ------------------------------------------------------------------------------- our verdicts

def folder_suite(folder: str) -> kyverno_eval.TestSuite:
    """Our policy folder's suite (its cases and resources), read as the offline evaluator reads it."""
    return kyverno_eval.load_suite(POLICIES / folder / ".kyverno-test" / "kyverno-test.yaml")


def our_verdict(suite: kyverno_eval.TestSuite, case: str) -> str:
    """The verdict our policy gives the case in its folder suite: fail if any rule fails it, else pass."""
    results = [c.expected for c in suite.cases if c.resource.split("/")[-1] == case]
    if not results:
        raise RecipeError(f"{suite.path}: no result for regression case {case}")
    return "fail" if "fail" in results else "pass"


def write_suite(reg: Regression, policy_text: str, folder: pathlib.Path) -> dict[str, str]:
    """A `kyverno test` folder: the recipe policy as written, the cases, our verdicts as the expected results."""
    suite = folder_suite(reg.folder)
    resources = {r["metadata"]["name"]: r for r in suite.resources}
    missing = [c for c in reg.cases if c not in resources]
    if missing:
        raise RecipeError(f"{reg.folder}: regression cases {missing} are not in its .kyverno-test resources")
    folder.mkdir(parents=True)
    (folder / "policy.yaml").write_text(policy_text, encoding="utf-8")
    (folder / "resources.yaml").write_text(yaml_io.dump_all([resources[c] for c in reg.cases]), encoding="utf-8")
    verdicts = {c: our_verdict(suite, c) for c in reg.cases}
    suite: dict[str, Any] = {
        "apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Test", "metadata": {"name": f"recipe-{reg.recipe_rule}"},
        "policies": ["policy.yaml"], "resources": ["resources.yaml"],
        "results": [{"policy": reg.recipe_policy, "rule": reg.recipe_rule, "resources": [c], "kind": "Pod",
                     "result": v} for c, v in verdicts.items()],
    }
    if reg.namespace_labels:
        (folder / "values.yaml").write_text(yaml_io.dump_all([{
            "apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Value", "metadata": {"name": "values"},
            "namespaceSelector": [{"name": n, "labels": labels} for n, labels in reg.namespace_labels.items()],
        }]), encoding="utf-8")
        suite["variables"] = "values.yaml"
    (folder / "kyverno-test.yaml").write_text(yaml_io.dump_all([suite]), encoding="utf-8")
    return verdicts


# ------------------------------------------------------------------------------------ engines

def check_validate_rules(cli: pathlib.Path, policies: dict[str, str], work: pathlib.Path) -> list[str]:
    """Run every regression suite over the recipe; one line per case. Raise unless every row fails."""
    lines, wrong = [], []
    for i, reg in enumerate(REGRESSIONS):
        if reg.recipe_policy not in policies:
            raise RecipeError(f"the page has no ClusterPolicy {reg.recipe_policy}")
        verdicts = write_suite(reg, policies[reg.recipe_policy], work / f"{i:02d}-{reg.recipe_rule}")
        rows, _passed, _failed, text = kyverno_parity.run_cli(cli, work / f"{i:02d}-{reg.recipe_rule}")
        by_case = {r.resource.split("/")[-1]: r for r in rows}
        for case, ours in verdicts.items():
            row = by_case.get(case)
            if row is None:
                raise RecipeError(f"{reg.recipe_rule}/{case}: no row from the CLI:\n{text[-1500:]}")
            recipe = row.decided or row.reason
            lines.append(f"{reg.recipe_policy}/{reg.recipe_rule} {case}: ours {ours}, recipe {recipe} "
                         f"({row.reason}{': ' + row.message[:90] if row.message else ''})")
            if row.result.lower() == "pass":
                wrong.append(f"{reg.recipe_rule}/{case}: the recipe decides it as ours does ({row.reason})")
    if wrong:
        raise RecipeError("not a regression:\n  " + "\n  ".join(wrong))
    return lines


def recipe_network_policy(policy_text: str, namespace: str) -> dict[str, Any]:
    """The NetworkPolicy the recipe's generate rule creates in `namespace` (its data; the name and namespace are
    the rule's only template fields)."""
    policy = yaml.safe_load(policy_text)
    (rule,) = [r for r in policy["spec"]["rules"] if r["name"] == EGRESS_POLICY[1]]
    gen = rule["generate"]
    return {"apiVersion": gen["apiVersion"], "kind": gen["kind"],
            "metadata": {"name": gen["name"], "namespace": namespace}, **copy.deepcopy(gen["data"])}


def dns_reachability(network_policy: dict[str, Any]) -> tuple[bool, bool]:
    """(UDP 53, TCP 53) from the locked model pod to kube-dns in kube-system, as nca decides."""
    with tempfile.TemporaryDirectory() as tmp:
        pol = pathlib.Path(tmp) / "policies.yaml"
        pol.write_text(yaml_io.dump_all([network_policy]), encoding="utf-8")
        rc, out, err = nca.run_nca(nca.nca_args(pol, NETPOL_DIR / "pods.yaml", NETPOL_DIR / "namespaces.yaml"))
    if rc != 0:
        raise RecipeError(f"nca failed ({rc}): {out[-800:]}{err[-800:]}")
    allowed = nca.parse_output(out.replace("TCP, UDP", "TCP,UDP")).get(("ai-locked/model-0", "kube-system/kube-dns-0"),
                                                                       nca.NOTHING)
    return allowed.allows(53, "UDP"), allowed.allows(53)


def check_egress(policies: dict[str, str]) -> list[str]:
    """DNS from a locked inference pod: refused under the recipe's NetworkPolicy, allowed under ours."""
    recipe_np = recipe_network_policy(policies[EGRESS_POLICY[0]], "ai-locked")
    settings = StackConfig.model_validate({
        "existingCluster": {"context": "c", "networkPolicyEnforced": True}, "security": True,
        "guardrails": {"enabled": True}})
    (ours,) = [p for p in guardrails.build_policies(settings) if p["metadata"]["name"] == guardrails.EGRESS_POLICY]
    namespaces = yaml_io.load((NETPOL_DIR / "namespaces.yaml").read_text(encoding="utf-8"))["items"]
    (locked,) = [n for n in namespaces if n["metadata"]["name"] == "ai-locked"]
    ours_np = kyverno_eval.evaluate_rule(ours["spec"]["rules"][0], locked).generated
    if ours_np is None:
        raise RecipeError("the catalog's egress lockdown generated nothing for the locked namespace")
    recipe_dns, ours_dns = dns_reachability(recipe_np), dns_reachability(ours_np)
    line = (f"{EGRESS_POLICY[0]}/{EGRESS_POLICY[1]} ai-locked/model-0 -> kube-system/kube-dns-0 :53 "
            f"(UDP, TCP): ours {ours_dns}, recipe {recipe_dns}")
    if ours_dns != (True, True) or recipe_dns[0]:
        raise RecipeError("not a regression: " + line)
    return [line]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=pathlib.Path, default=None,
                        help="the recipe page (default: $RECIPE_PAGE)")
    parser.add_argument("--cli", type=pathlib.Path, default=None, help="Kyverno CLI (default: the engines cache)")
    parser.add_argument("--work", type=pathlib.Path, default=ROOT / "build" / "recipe-regressions")
    args = parser.parse_args(argv)
    page_path = args.page or (pathlib.Path(os.environ["RECIPE_PAGE"]) if os.environ.get("RECIPE_PAGE") else None)
    if page_path is None:
        print(f"recipe-regressions: no recipe page (RECIPE_PAGE); {HOW_TO_GET}", file=sys.stderr)
        return 2
    cli = args.cli or kyverno_parity.cli_path()
    if not cli.is_file():
        print(f"recipe-regressions: no Kyverno CLI at {cli}; build it with `make kyverno-cli`", file=sys.stderr)
        return 2
    shutil.rmtree(args.work, ignore_errors=True)
    try:
        policies = extract_policies(read_page(page_path))
        lines = check_validate_rules(cli, policies, args.work) + check_egress(policies)
    except RecipeError as err:
        print(f"recipe-regressions: {err}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    print(f"recipe regressions: {len(lines)} of {len(lines)} decided otherwise by the recipe as written "
          f"({RECIPE_REPO} {RECIPE_COMMIT[:7]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
