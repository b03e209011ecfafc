"""The replay of the evaluator's decisions through the Kyverno CLI (tests/kyverno_parity.py), without the CLI.

`make kyverno-test` runs the CLI itself; these tests pin how cases become CLI suites and how the CLI's
output is read, including the rows `kyverno test` counts as passes although the engine did not decide.
"""

from __future__ import annotations

import copy
import json
import pathlib

import pytest

from components import yaml_io
from tests import kyverno_parity
from tools import kyverno_eval

POLICY = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
          "metadata": {"name": "p", "annotations": {kyverno_eval.AUTOGEN_ANNOTATION: "none"}},
          "spec": {"webhookConfiguration": {"failurePolicy": "Fail", "matchConditions": [
              {"name": "m", "expression": "true"}]},
                   "rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                              "validate": {"cel": {"expressions": [{"expression": "true"}]}}}]}}


def _pod(name: str, labels: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": "team-a"}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "c"}]}}


def _case(resource: dict, *, old: dict | None = None, user: str = "alice", ns_labels=None,
          expected: str = "pass") -> kyverno_parity.Case:
    return kyverno_parity.Case(POLICY, "r", resource, old, "UPDATE" if old else "CREATE", user, [],
                               ns_labels or {}, [], "", expected, "", None)


def _merge(src: dict, dst: dict) -> None:
    """Kyverno's pkg/engine/context mergeMaps (overwriteMaps=false), which the Values file goes through."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(v, dst[k])
        else:
            dst[k] = v


def test_update_values_rebuild_both_objects_exactly():
    old = _pod("x", {"a": "1", "gone": "yes"})
    old["spec"]["schedulingGates"] = [{"name": "g"}]
    new = _pod("x", {"a": "2", "added": "yes"})
    base = kyverno_parity.common_part(old, new)
    assert "gone" not in base["metadata"]["labels"] and "added" not in base["metadata"]["labels"]
    for side in (old, new):
        rebuilt = copy.deepcopy(base)
        _merge(side, rebuilt)
        assert rebuilt == side


def test_cases_sharing_a_name_or_clashing_labels_go_to_separate_suites():
    a = _case(_pod("x"), ns_labels={"team-a": {"q": "1"}})
    b = _case(_pod("x"), ns_labels={"team-a": {"q": "1"}})            # same name
    c = _case(_pod("y"), ns_labels={"team-a": {"q": "2"}})            # other labels for team-a
    d = _case(_pod("z"), ns_labels={"team-a": {"q": "1"}})            # fits with a
    e = _case(_pod("w"), user="bob")                                  # other user
    suites = kyverno_parity.group_cases([a, b, c, d, e])
    assert [[c_.name for c_ in s.cases] for s in suites] == [["x", "z"], ["x"], ["y"], ["w"]]
    assert [s.username for s in suites] == ["alice", "alice", "alice", "bob"]


def test_written_suite(tmp_path: pathlib.Path):
    new, old = _pod("x", {"a": "2"}), _pod("x", {"a": "1"})
    suite = kyverno_parity.group_cases([_case(new, old=old, expected="fail",
                                              ns_labels={"team-a": {"k": "v"}})])[0]
    kyverno_parity.write_suite(suite, tmp_path / "s")
    test = yaml_io.load((tmp_path / "s" / "kyverno-test.yaml").read_text())
    assert test["results"] == [{"policy": "p", "rule": "r", "resources": ["x"], "kind": "Pod", "result": "fail"}]
    values = yaml_io.load((tmp_path / "s" / "values.yaml").read_text())
    assert values["namespaceSelector"] == [{"name": "team-a", "labels": {"k": "v"}}]
    (entry,) = values["policies"][0]["resources"]
    assert entry["values"] == {"request.operation": "UPDATE", "request.object": new, "request.oldObject": old}
    assert yaml_io.load((tmp_path / "s" / "userinfo.yaml").read_text())["userInfo"]["username"] == "alice"
    policy = yaml_io.load((tmp_path / "s" / "policy.yaml").read_text())
    assert "matchConditions" not in policy["spec"]["webhookConfiguration"], "the CLI panics on them (#15833)"
    assert POLICY["spec"]["webhookConfiguration"]["matchConditions"], "the recorded policy is left as it was"


def _block(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)


OUTPUT = f"""Loading test  ( /w/0/0000/kyverno-test.yaml ) ...
  Loading values/variables ...
  Checking results ...

{_block([
    {"ID": 1, "POLICY": "p", "RULE": "r", "RESOURCE": "v1/Pod/team-a/x", "RESULT": "Pass", "REASON": "Ok",
     "Message": ""},
    {"ID": 2, "POLICY": "p", "RULE": "r", "RESOURCE": "v1/Pod/team-a/y", "RESULT": "Pass", "REASON": "Excluded",
     "Message": "Excluded"}])}

Loading test  ( /w/0/0001/kyverno-test.yaml ) ...
  Checking results ...

{_block([
    {"ID": 1, "POLICY": "p", "RULE": "r", "RESOURCE": "v1/Pod/team-a/z", "RESULT": "Fail",
     "REASON": "Want pass, got fail", "Message": "denied"},
    {"ID": 2, "POLICY": "g", "RULE": "gen", "RESOURCE": "v1/Namespace/default/n", "RESULT": "Fail",
     "REASON": "Not found", "Message": "Not found"}])}


Test Summary: 2 tests passed and 2 tests failed
"""


def test_output_is_read_with_what_the_engine_decided():
    rows, passed, failed = kyverno_parity.parse_output(OUTPUT)
    assert (passed, failed) == (2, 2)
    assert [(r.test, r.resource.rsplit("/", 1)[-1], r.decided) for r in rows] == [
        ("/w/0/0000/kyverno-test.yaml", "x", ""),           # as expected
        ("/w/0/0000/kyverno-test.yaml", "y", "skip"),       # counted a pass by the CLI, decided nothing
        ("/w/0/0001/kyverno-test.yaml", "z", "fail"),
        ("/w/0/0001/kyverno-test.yaml", "n", "not found"),
    ]


def test_output_without_summary_is_an_error():
    with pytest.raises(RuntimeError, match="no summary"):
        kyverno_parity.parse_output("panic: runtime error")


def test_an_excluded_row_for_a_failing_case_is_a_difference(tmp_path: pathlib.Path):
    suites = kyverno_parity.group_cases([_case(_pod("x"), expected="pass"), _case(_pod("y"), expected="fail")])
    folder = tmp_path / "0000"
    rows, _, _ = kyverno_parity.parse_output(OUTPUT.replace("/w/0/0000", str(folder)))
    diffs = kyverno_parity.compare(suites, [folder], rows)
    assert [(d.case.name, d.decided) for d in diffs] == [("y", "skip")]


def test_version_comes_from_the_pinned_module():
    assert kyverno_parity.kyverno_version().startswith("v1.18.")
    assert kyverno_parity.cli_path().parent.name == f"kyverno-{kyverno_parity.kyverno_version()}"


def test_missing_cli_is_one_clear_error(tmp_path: pathlib.Path, capsys):
    assert kyverno_parity.main(["--cli", str(tmp_path / "nope"), "--work", str(tmp_path / "w")]) == 2
    assert "make kyverno-cli" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_recorder_writes_one_line_per_decision(tmp_path: pathlib.Path, monkeypatch):
    record = tmp_path / "r.jsonl"
    monkeypatch.setenv(kyverno_eval.RECORD_ENV, str(record))
    rule = POLICY["spec"]["rules"][0]
    kyverno_eval.evaluate_rule(rule, _pod("x"), "CREATE", "alice", policy=POLICY)
    kyverno_eval.evaluate_rule(rule, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    cases = kyverno_parity.load_record(record)
    assert [(c.name, c.expected, c.policy["metadata"]["name"]) for c in cases] == [
        ("x", "pass", "p"), ("n", "skip", "rule-r")]


def test_the_report_is_written_again_from_the_clis_rows(tmp_path: pathlib.Path, monkeypatch):
    """The evaluator's report decisions, recorded and grouped as `make kyverno-test` does, come back by key when
    the report is rendered from the CLI's rows; a decision the CLI made otherwise is the one the report shows."""
    from components import guardrails
    from components.config import StackConfig
    from tools import guardrail_report

    base = tmp_path / "reference-platform" / "serving"
    base.mkdir(parents=True)
    (base / "pods.yaml").write_text(yaml_io.dump_all([
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bounded", "namespace": "serving"},
         "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unbounded", "namespace": "serving"},
         "spec": {"containers": [{"name": "c", "image": "i"}]}}]))
    settings = StackConfig.model_validate({
        "existingCluster": {"context": "c", "networkPolicyEnforced": True}, "security": True,
        "guardrails": {"enabled": True}})
    (policy,) = [p for p in guardrails.build_policies(settings) if p["metadata"]["name"] == "guardrail-require-limits"]
    render = tmp_path / "w" / "render-dev"
    (render / "k8s").mkdir(parents=True)
    (render / "k8s" / "ClusterPolicy.guardrail-require-limits.yaml").write_text(yaml_io.dump_all([policy]))
    monkeypatch.setenv("LLM_PLATFORM_SHARED", str(tmp_path))
    record = tmp_path / "r.jsonl"
    monkeypatch.setenv(kyverno_eval.RECORD_ENV, str(record))
    evaluator = guardrail_report.render_markdown("dev", [policy], [])
    monkeypatch.delenv(kyverno_eval.RECORD_ENV)
    assert "| Pod serving/unbounded |" in evaluator and "| Pod serving/bounded |" not in evaluator

    suites = kyverno_parity.group_cases(kyverno_parity.load_record(record))
    folders = [tmp_path / "w" / "parity" / f"{i:04d}" for i in range(len(suites))]
    # The CLI agrees on `unbounded` and, in this made-up run, fails `bounded` too.
    rows = [kyverno_parity.Row(str(folders[0] / "kyverno-test.yaml"), "guardrail-require-limits",
                               "require-cpu-memory-limits", f"v1/Pod/serving/{c.name}",
                               "Fail" if c.name == "bounded" else "Pass",
                               "Want pass, got fail" if c.name == "bounded" else "Ok", "cli says so")
            for c in suites[0].cases]
    lines = kyverno_parity.cli_reports(suites, folders, rows, tmp_path / "w", "v1.18.1")
    assert len(lines) == 1 and "2 decisions by the Kyverno CLI, 2 fail" in lines[0], lines
    text = (tmp_path / "w" / "guardrails-report-dev.md").read_text()
    assert "Decided by the Kyverno CLI v1.18.1" in text
    assert "| Pod serving/bounded |" in text and "fail: cli says so" in text

    without_unbounded = [r for r in rows if not r.resource.endswith("/unbounded")]
    with pytest.raises(RuntimeError, match="decided guardrail-require-limits/require-cpu-memory-limits on Pod "
                                           "serving/unbounded nowhere"):
        kyverno_parity.cli_reports(suites, folders, without_unbounded, tmp_path / "w", "v1.18.1")
