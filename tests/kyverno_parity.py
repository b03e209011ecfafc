"""Kyverno's own engine decides: `make kyverno-test` (docs/real-engines.md).

1. `kyverno test policies/kyverno`: every policy folder's hand-written suite, run by the Kyverno CLI
   built from engines/kyverno (the app version of chart 3.8.1).
2. Parity: every decision the project's offline evaluator (tools/kyverno_eval.py) makes in the policy
   tests, in both stacks' renders (the guardrail report over the reference platform) and on the folder
   suites with each stack's rendering of the policy, is recorded ($KYVERNO_EVAL_RECORD) and replayed
   through `kyverno test` with the evaluator's result as the expected one. A case where the CLI decides
   otherwise is a difference.
3. The guardrail report over the reference platform, written again for each stack from the CLI's rows
   (build/kyverno-test/guardrails-report-<stack>.md).

How a case becomes a CLI test: one directory per group of cases that share the policy, exceptions and
request user (unique resource names in each), a Values file with the namespaces' labels and, for an UPDATE,
`request.operation`, `request.object` and `request.oldObject`. The CLI builds the old object as a copy of
the resource and then merges the values into its JSON context (pkg/engine/context AddVariable merges maps,
it never deletes keys), so the resource written is the part common to the object and the old object, and
the values add each side's own fields back.

`kyverno test` reports a resource the rule did not match as "Excluded", and counts it a pass whatever
result was expected; the replay therefore reads the CLI's rows and takes "Excluded" as `skip`, so a
case the evaluator fails and Kyverno does not match is a difference, not a pass.

The CLI cannot load a ClusterPolicy with `spec.webhookConfiguration.matchConditions`: policy validation
dereferences a nil cluster client to check the Kubernetes version (pkg/validation/policy/validate.go:139,
kyverno/kyverno#15833, open; v1.18.2 too). Match conditions are the API server's to evaluate, never the
engine's, so they are removed from the CLI's copy of every policy (folders and parity suites alike); the
real API server evaluates them in `make e2e`.

Not replayable through the CLI (counted and listed, not compared): requests on a subresource (the CLI's
Values `subresources` only map kinds; it has no subresource request).

Output ends with two lines:
    parity: N cases, D differences
    kyverno-test: CLI v1.18.x, N tests, F failed
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from components import yaml_io
from tools import guardrail_report, kyverno_eval

ROOT = pathlib.Path(__file__).resolve().parent.parent
GO_MOD = ROOT / "engines" / "kyverno" / "go.mod"
POLICIES = ROOT / "policies" / "kyverno"
# The evaluator's own tests: every decision they make is replayed.
POLICY_TESTS = ("tests/test_guardrails.py", "tests/test_kueue_policy.py", "tests/test_kueue_chains.py",
                "tests/test_agent_admission.py", "tests/test_tenant_boundaries.py")
STACKS = ("dev", "prod")
MUTATE_TESTS = "stamp-owner-test.yaml"   # mutate suites: the CLI alone decides them


def kyverno_version() -> str:
    """The pinned Kyverno version, read from engines/kyverno/go.mod (its one source)."""
    match = re.search(r"^\s*github\.com/kyverno/kyverno (v\S+)", GO_MOD.read_text(encoding="utf-8"), re.M)
    if not match:
        raise SystemExit(f"{GO_MOD}: no github.com/kyverno/kyverno requirement")
    return match.group(1)


def engines_cache() -> pathlib.Path:
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return pathlib.Path(os.environ.get("ENGINES_CACHE") or default / "llm-platform" / "engines")


def cli_path() -> pathlib.Path:
    return engines_cache() / f"kyverno-{kyverno_version()}" / "kubectl-kyverno"


# ----------------------------------------------------------------------------------------- cases

@dataclass
class Case:
    """One admission request the evaluator decided."""

    policy: dict
    rule: str
    resource: dict
    old: Optional[dict]
    operation: str
    username: str
    groups: list[str]
    ns_labels: dict[str, dict[str, str]]
    exceptions: list[dict]
    subresource: str
    expected: str
    message: str
    generated: Optional[dict]

    @property
    def name(self) -> str:
        return str(self.resource.get("metadata", {}).get("name", ""))

    def describe(self) -> str:
        meta = self.resource.get("metadata", {})
        user = f" as {self.username}" if self.username else ""
        return (f"{self.policy['metadata']['name']}/{self.rule}: {self.operation} {self.resource.get('kind')} "
                f"{meta.get('namespace', '')}/{meta.get('name', '')}{user}")


def _wrap(rule: dict) -> dict:
    """A rule recorded without its policy (the SR2 chain tests pass the rule alone)."""
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
            "metadata": {"name": f"rule-{rule['name']}",
                         "annotations": {kyverno_eval.AUTOGEN_ANNOTATION: "none"}},
            "spec": {"rules": [rule]}}


def load_record(path: pathlib.Path) -> list[Case]:
    """The recorded decisions, duplicates dropped (the same request decided twice is one case)."""
    seen: set[str] = set()
    cases = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            digest = hashlib.sha256(line.encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            e = json.loads(line)
            rule = e["rule"]
            policy = e["policy"] or _wrap(rule)
            if e["policy"] is not None and not any(r["name"] == rule["name"] for r in policy["spec"]["rules"]):
                policy = _wrap(rule)
            old = e["old"]
            if e["operation"] == "UPDATE" and not e["oldGiven"]:
                old = e["resource"]  # the CLI's own convention, which the evaluator mirrors
            cases.append(Case(policy, rule["name"], e["resource"], old, e["operation"], e["username"],
                              list(e["groups"]), e["nsLabels"], list(e["exceptions"]), e["subresource"],
                              e["result"], e["message"], e["generated"]))
    return cases


# --------------------------------------------------------------------------------- CLI suites

def common_part(a: Any, b: Any) -> Any:
    """The keys both objects have (recursively); elsewhere the second one's value."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: common_part(a[k], b[k]) for k in a if k in b}
    return b


def _key(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dataclass
class Suite:
    """One CLI test directory."""

    group: str
    policy: dict
    exceptions: list[dict]
    username: str
    groups: list[str]
    ns_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)

    def accepts(self, case: Case) -> bool:
        if any(c.name == case.name for c in self.cases):
            return False  # the CLI's Values and results name resources by name alone
        return all(self.ns_labels.get(ns, labels) == labels for ns, labels in case.ns_labels.items())

    def add(self, case: Case) -> None:
        self.cases.append(case)
        self.ns_labels.update(case.ns_labels)


def group_cases(cases: list[Case]) -> list[Suite]:
    suites: list[Suite] = []
    open_by_group: dict[str, list[Suite]] = collections.defaultdict(list)
    for case in cases:
        group = _key([case.policy, case.exceptions, case.username, case.groups])
        suite = next((s for s in open_by_group[group] if s.accepts(case)), None)
        if suite is None:
            suite = Suite(group, case.policy, case.exceptions, case.username, case.groups)
            open_by_group[group].append(suite)
            suites.append(suite)
        suite.add(case)
    return suites


def for_cli(policy: dict) -> dict:
    """The policy as the CLI can load it: without the API server's webhook matchConditions (#15833)."""
    webhook = policy.get("spec", {}).get("webhookConfiguration", {})
    if "matchConditions" not in webhook:
        return policy
    policy = json.loads(json.dumps(policy))
    del policy["spec"]["webhookConfiguration"]["matchConditions"]
    return policy


def copy_folders(src: pathlib.Path, dst: pathlib.Path) -> None:
    """The policy folders, as the CLI can load them (for_cli on every policy document)."""
    shutil.copytree(src, dst)
    for path in sorted(dst.rglob("*.yaml")):
        docs = kyverno_eval.load_yaml_docs(path)
        if any(d.get("kind") in ("ClusterPolicy", "Policy") for d in docs):
            _dump(path, [for_cli(d) if d.get("kind") in ("ClusterPolicy", "Policy") else d for d in docs])


def _dump(path: pathlib.Path, docs: list[Any]) -> None:
    path.write_text(yaml_io.dump_all(docs, sort_keys=True), encoding="utf-8")


def write_suite(suite: Suite, folder: pathlib.Path) -> None:
    folder.mkdir(parents=True)
    policy_name = suite.policy["metadata"]["name"]
    _dump(folder / "policy.yaml", [for_cli(suite.policy)])
    resources, values, results = [], [], []
    for i, case in enumerate(suite.cases):
        resource = case.resource
        if case.operation == "UPDATE" and case.old is not None:
            resource = common_part(case.old, case.resource)
            values.append({"name": case.name, "values": {
                "request.operation": "UPDATE", "request.object": case.resource, "request.oldObject": case.old}})
        resources.append(resource)
        result: dict[str, Any] = {"policy": policy_name, "rule": case.rule, "resources": [case.name],
                                  "kind": case.resource.get("kind"), "result": case.expected}
        if case.generated is not None:
            _dump(folder / f"generated-{i}.yaml", [case.generated])
            result["generatedResource"] = f"generated-{i}.yaml"
        results.append(result)
    _dump(folder / "resources.yaml", resources)
    test: dict[str, Any] = {"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Test",
                            "metadata": {"name": folder.name}, "policies": ["policy.yaml"],
                            "resources": ["resources.yaml"], "results": results}
    if suite.exceptions:
        _dump(folder / "exceptions.yaml", suite.exceptions)
        test["exceptions"] = ["exceptions.yaml"]
    if suite.ns_labels or values:
        _dump(folder / "values.yaml", [{
            "apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Values", "metadata": {"name": "values"},
            "namespaceSelector": [{"name": ns, "labels": labels} for ns, labels in sorted(suite.ns_labels.items())],
            "policies": [{"name": policy_name, "resources": values}] if values else []}])
        test["variables"] = "values.yaml"
    if suite.username or suite.groups:
        _dump(folder / "userinfo.yaml", [{
            "apiVersion": "cli.kyverno.io/v1alpha1", "kind": "UserInfo", "metadata": {"name": "userinfo"},
            "userInfo": {"username": suite.username, "groups": suite.groups}}])
        test["userinfo"] = "userinfo.yaml"
    _dump(folder / "kyverno-test.yaml", [test])


# ------------------------------------------------------------------------------- CLI output

@dataclass
class Row:
    test: str
    policy: str
    rule: str
    resource: str
    result: str
    reason: str
    message: str

    @property
    def decided(self) -> str:
        """What the engine decided, whatever the test expected."""
        if self.reason == "Excluded":
            return "skip"
        if self.reason == "Not found":
            return "not found"  # no engine response (a generate rule that did not trigger, or no match)
        got = re.search(r"[Gg]ot (\w+)", self.reason)
        return got.group(1) if got else ""


_LOADING = re.compile(r"^Loading test\s+\( (.+) \) \.\.\.$", re.M)
_SUMMARY = re.compile(r"^Test Summary: (\d+) tests passed and (\d+) tests failed$", re.M)


def parse_output(text: str) -> tuple[list[Row], int, int]:
    """Rows of `kyverno test -o json --detailed-results` and the summary's (passed, failed).

    Each test prints `Loading test ( <path> ) ...`, progress lines, then its rows as one JSON array.
    """
    rows: list[Row] = []
    starts = list(_LOADING.finditer(text))
    decoder = json.JSONDecoder()
    for n, start in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else len(text)
        chunk = text[start.end():end]
        at = chunk.find("\n[")
        if at < 0:
            continue  # a test with no result rows
        block, _ = decoder.raw_decode(chunk[at + 1:])
        rows += [Row(start.group(1), r["POLICY"], r["RULE"], r["RESOURCE"], r["RESULT"], r["REASON"],
                     r.get("Message", "")) for r in block]
    summary = _SUMMARY.search(text)
    if not summary:
        raise RuntimeError("kyverno test printed no summary:\n" + text[-2000:])
    return rows, int(summary.group(1)), int(summary.group(2))


def _cli_test(cli: pathlib.Path, folder: pathlib.Path, file_name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(cli), "test", str(folder), "--file-name", file_name, "--remove-color",
                             "--detailed-results", "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_cli(cli: pathlib.Path, *folders: pathlib.Path,
            file_name: str = "kyverno-test.yaml") -> tuple[list[Row], int, int, str]:
    """`kyverno test` on each folder, all at once (the CLI runs one test at a time; a CPU each)."""
    procs = [_cli_test(cli, folder, file_name) for folder in folders]
    rows: list[Row] = []
    passed, failed, texts = 0, 0, []
    for proc in procs:
        text, _ = proc.communicate()
        r, p, f = parse_output(text)
        rows, passed, failed = rows + r, passed + p, failed + f
        texts.append(text)
    return rows, passed, failed, "".join(texts)


# --------------------------------------------------------------------------------- collection

def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"kyverno-test: {what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                         f"{proc.stderr[-3000:]}")


def _rendered(out: pathlib.Path, kind: str) -> dict[str, dict]:
    docs = {}
    for path in sorted((out / "k8s").glob(f"{kind}.*.yaml")):
        (doc,) = kyverno_eval.load_yaml_docs(path)
        docs[doc["metadata"]["name"]] = doc
    return docs


def decide_rendered_suites(render: pathlib.Path) -> int:
    """Each folder suite and update-cases file again, with the stack's rendering of its policy."""
    rendered = _rendered(render, "ClusterPolicy")
    count = 0
    for test_file in kyverno_eval.discover_test_files(POLICIES):
        suite = kyverno_eval.load_suite(test_file)
        if not any(p["metadata"]["name"] in rendered for p in suite.policies):
            continue
        suite.policies = [rendered.get(p["metadata"]["name"], p) for p in suite.policies]
        for case in suite.cases:
            policy = next(p for p in suite.policies if p["metadata"]["name"] == case.policy)
            if not any(r["name"] == case.rule for r in policy["spec"]["rules"]):
                continue  # the stack renders the policy without this rule (e.g. no agent namespaces)
            kyverno_eval.evaluate_case(suite, case)
            count += 1
    for path in kyverno_eval.discover_update_files(POLICIES):
        for uc in kyverno_eval.load_update_cases(path):
            stack_policy = rendered.get(uc.policy)
            if stack_policy is None:
                continue
            (rule,) = [r for r in stack_policy["spec"]["rules"] if r["name"] == uc.rule]
            ns_labels = _update_namespace_labels(path)
            kyverno_eval.evaluate_rule(rule, uc.object, uc.operation, uc.username, ["system:authenticated"],
                                       ns_labels, old=uc.old_object, subresource=uc.subresource, policy=stack_policy)
            count += 1
    return count


def _update_namespace_labels(path: pathlib.Path) -> dict[str, dict[str, str]]:
    """update-cases.yaml sits beside the suite whose values file labels its namespaces."""
    suite = path.parent / "kyverno-test.yaml"
    return kyverno_eval.load_suite(suite).namespace_labels if suite.is_file() else {}


def collect(work: pathlib.Path) -> tuple[pathlib.Path, int]:
    """Record every decision of the evaluator: its tests, both stacks' renders and rendered suites."""
    record = work / "record.jsonl"
    env = {**os.environ, kyverno_eval.RECORD_ENV: str(record)}
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *POLICY_TESTS], env,
         "the evaluator's policy tests")
    rendered_cases = 0
    for stack in STACKS:
        out = work / f"render-{stack}"
        _run([sys.executable, "-m", "tools.render", "--stack", stack, "--out", str(out)], env, f"render {stack}")
        os.environ[kyverno_eval.RECORD_ENV] = str(record)
        try:
            rendered_cases += decide_rendered_suites(out)
        finally:
            del os.environ[kyverno_eval.RECORD_ENV]
    return record, rendered_cases


# ----------------------------------------------------------------------------------- compare

@dataclass
class Difference:
    case: Case
    decided: str
    message: str


def _decisions(suites: list[Suite], folders: list[pathlib.Path],
               rows: list[Row]) -> list[tuple[Case, Optional[tuple[str, str]]]]:
    """Each case with what the CLI decided for it (decision, message), or None when it printed no row."""
    by_test: dict[str, list[Row]] = collections.defaultdict(list)
    for row in rows:
        by_test[str(pathlib.Path(row.test).resolve().parent)].append(row)
    out: list[tuple[Case, Optional[tuple[str, str]]]] = []
    for suite, folder in zip(suites, folders, strict=True):
        suite_rows = by_test.get(str(folder.resolve()), [])
        for case in suite.cases:
            mine = [r for r in suite_rows if r.resource.rsplit("/", 1)[-1] == case.name and r.rule in (case.rule, "")]
            if case.generated is not None:  # generate: one row per generated resource, named after it
                generated = case.generated["metadata"]["name"]
                mine = [r for r in suite_rows if r.rule == case.rule and r.resource.rsplit("/", 1)[-1] == generated]
            if not mine:
                out.append((case, None))
                continue
            # a row that passed decided what the case expected
            decided = [r.decided or case.expected for r in mine]
            if "generate" in _rule(case) and case.expected == "skip":
                # a generate rule that does not trigger leaves no response: the CLI says "Not found"
                decided = ["skip" if d == "not found" else d for d in decided]
            out.append((case, (",".join(sorted(set(decided))), mine[0].message)))
    return out


def compare(suites: list[Suite], folders: list[pathlib.Path], rows: list[Row]) -> list[Difference]:
    out = []
    for case, decision in _decisions(suites, folders, rows):
        if decision is None:
            out.append(Difference(case, "no result", ""))
        elif decision[0] != case.expected:
            out.append(Difference(case, decision[0], decision[1]))
    return out


def case_key(policy: dict, rule: str, resource: dict, operation: str, exceptions: list, ns_labels: dict,
             username: str = "", groups: Optional[list[str]] = None, old: Optional[dict] = None) -> str:
    """One admission request, as the record holds it (JSON round trip)."""
    return _key(json.loads(json.dumps([policy, rule, resource, operation, exceptions, ns_labels, username,
                                       groups or [], old], default=str)))


def cli_reports(suites: list[Suite], folders: list[pathlib.Path], rows: list[Row], work: pathlib.Path,
                version: str) -> list[str]:
    """The guardrail report of each stack's render again, decided by the Kyverno CLI (the rows of its cases);
    one summary line per stack. Raise if the CLI decided a case of the report nowhere."""
    decided = {case_key(c.policy, c.rule, c.resource, c.operation, c.exceptions, c.ns_labels, c.username,
                        c.groups, c.old): d
               for c, d in _decisions(suites, folders, rows) if d is not None}
    lines = []
    for stack in STACKS:
        render = work / f"render-{stack}"
        if render.is_dir():
            lines += _cli_report(stack, render, decided, work, version)
    return lines


def _cli_report(stack: str, render: pathlib.Path, decided: dict[str, tuple[str, str]], work: pathlib.Path,
                version: str) -> list[str]:
    objects = [d for path in sorted((render / "k8s").glob("*.yaml")) for d in kyverno_eval.load_yaml_docs(path)]
    policies, exceptions = guardrail_report.report_inputs(objects)
    if not policies:
        return []
    used: list[tuple[str, str]] = []

    def decide(policy: dict, rule: dict, obj: dict, ns_labels: dict, excs: list) -> tuple[str, str]:
        key = case_key(policy, rule["name"], obj, "CREATE", excs, ns_labels)
        if key not in decided:
            meta = obj.get("metadata", {})
            raise RuntimeError(f"{stack} report: the CLI decided {policy['metadata']['name']}/{rule['name']} "
                               f"on {obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')} nowhere")
        used.append(decided[key])
        return decided[key]

    text = guardrail_report.render_markdown(
        stack, policies, exceptions, decide=decide,
        engine=f"Decided by the Kyverno CLI {version} (`make kyverno-test`: each decision is a row of a "
               "`kyverno test` run; build/<stack>/guardrails-report.md is the evaluator's).")
    path = work / f"guardrails-report-{stack}.md"
    path.write_text(text, encoding="utf-8")
    fails = sum(d[0] in ("fail", "error") for d in used)
    return [f"guardrails report ({stack}): {len(used)} decisions by the Kyverno CLI, {fails} fail or error; {path}"]


def _rule(case: Case) -> dict:
    return next(r for r in case.policy["spec"]["rules"] if r["name"] == case.rule)


def _cli_version(cli: pathlib.Path) -> str:
    text = subprocess.run([str(cli), "version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Version:\s*(\S+)", text)
    return match.group(1) if match else text.strip()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", type=pathlib.Path, default=None, help="Kyverno CLI (default: the engines cache)")
    parser.add_argument("--work", type=pathlib.Path, default=ROOT / "build" / "kyverno-test",
                        help="where the recorded cases and generated suites are written (recreated)")
    parser.add_argument("--record", type=pathlib.Path, default=None,
                        help="replay this record instead of collecting one (development)")
    args = parser.parse_args(argv)
    cli = args.cli or cli_path()
    if not cli.is_file():
        print(f"kyverno-test: no Kyverno CLI at {cli}; build it with `make kyverno-cli`", file=sys.stderr)
        return 2
    version = _cli_version(cli)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    copy_folders(POLICIES, work / "folders")
    folder_rows, folder_pass, folder_fail, folder_text = run_cli(cli, work / "folders")
    (work / "folders.log").write_text(folder_text, encoding="utf-8")
    # Mutate suites carry their own file name (the evaluator has no mutate support, so they are not its cases).
    rows, passed, failed, text = run_cli(cli, work / "folders", file_name=MUTATE_TESTS)
    folder_rows, folder_pass, folder_fail = folder_rows + rows, folder_pass + passed, folder_fail + failed
    folder_text += text
    # Recipe regressions need the recipe page, which is not in the repository (tests/recipe_regressions.py).
    if os.environ.get("RECIPE_PAGE"):
        from tests import recipe_regressions

        if recipe_regressions.main(["--cli", str(cli), "--work", str(work / "recipe")]) != 0:
            folder_fail += 1
    else:
        print("recipe regressions: not run (set RECIPE_PAGE to the recipe page; docs/guardrails.md)")
    for row in folder_rows:
        if row.result.lower() != "pass":
            print(f"FAIL {row.test}: {row.policy}/{row.rule} {row.resource}: {row.reason} {row.message}")

    if args.record:  # re-check a saved record against the CLI (after a policy fix, say)
        record, rendered_cases = work / "record.jsonl", 0
        shutil.copyfile(args.record, record)
    else:
        record, rendered_cases = collect(work)
    cases = load_record(record)
    replayable = [c for c in cases if not c.subresource]
    not_replayable = [c for c in cases if c.subresource]
    suites = group_cases(replayable)
    parity_root = work / "parity"
    shards = max(1, os.cpu_count() or 1)
    folders = [parity_root / str(i % shards) / f"{i:04d}" for i in range(len(suites))]
    for suite, folder in zip(suites, folders, strict=True):
        write_suite(suite, folder)
    rows, parity_pass, parity_fail, parity_text = run_cli(
        cli, *sorted({f.parent for f in folders}))
    (work / "parity.log").write_text(parity_text, encoding="utf-8")
    differences = compare(suites, folders, rows)

    report = [f"# Parity: Kyverno CLI {version} vs tools/kyverno_eval.py", "",
              f"{len(replayable)} cases replayed in {len(suites)} CLI suites ({rendered_cases} decisions on the "
              f"stacks' renderings of the folder suites); {len(differences)} differences.", ""]
    report += [f"- {d.case.describe()}: evaluator {d.case.expected} ({d.case.message}); Kyverno {d.decided} "
               f"({d.message})" for d in differences]
    report += ["", f"Not replayable through the CLI ({len(not_replayable)}): requests on a subresource.", ""]
    report += [f"- {c.describe()} (subresource {c.subresource})" for c in not_replayable]
    (work / "parity.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    try:
        for line in cli_reports(suites, folders, rows, work, version):
            print(line)
    except RuntimeError as err:  # a report decision the CLI did not make
        print(f"FAIL {err}")
        folder_fail += 1
    for d in differences[:40]:
        print(f"DIFF {d.case.describe()}: evaluator {d.case.expected}, Kyverno {d.decided}: {d.message[:300]}")
    if len(differences) > 40:
        print(f"... {len(differences) - 40} more in {work / 'parity.md'}")
    print(f"parity: {len(replayable)} cases, {len(differences)} differences "
          f"({len(not_replayable)} subresource requests not replayable; details {work / 'parity.md'})")
    tests = folder_pass + folder_fail + parity_pass + parity_fail
    failed = folder_fail + len(differences)
    print(f"kyverno-test: CLI {version}, {tests} tests, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
