"""tests/recipe_regressions.py without the recipe page: extraction, the pin, the suites it writes, and how it
judges the engines' rows. The real run (Kyverno CLI + nca over the page) is `make recipe-regressions`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from components import yaml_io
from tests import kyverno_parity
from tests import recipe_regressions as rr
from tools import kyverno_eval

PAGE = """---
title: "A recipe"
---

```yaml
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: first
spec:
  rules:
    - name: r
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        cel:
          expressions:
            - expression: "true"
```

```bash
kubectl apply -f x.yaml
```

```yaml
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: egress
spec:
  rules:
    - name: generate-egress-restriction
      match:
        any:
          - resources:
              kinds: [Namespace]
      generate:
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        name: "locked"
        namespace: "{{ request.object.metadata.name }}"
        data:
          spec:
            podSelector: {}
            policyTypes: [Egress]
            egress:
              - to:
                  - namespaceSelector:
                      matchLabels:
                        kubernetes.io/metadata.name: kube-dns
                ports:
                  - port: 53
                    protocol: UDP
```

```yaml
kind: ConfigMap
metadata: {name: not-a-policy}
```
"""


def test_extract_keeps_each_cluster_policy_as_written():
    policies = rr.extract_policies(PAGE)
    assert list(policies) == ["first", "egress"]
    assert policies["first"] in PAGE, "the block's text, unchanged"
    assert yaml.safe_load(policies["egress"])["spec"]["rules"][0]["name"] == "generate-egress-restriction"


def test_only_the_pinned_page_is_read(tmp_path):
    page = tmp_path / "page.md"
    with pytest.raises(rr.RecipeError, match="not found"):
        rr.read_page(page)
    page.write_text(PAGE)
    with pytest.raises(rr.RecipeError, match="not the pinned recipe text") as err:
        rr.read_page(page)
    assert rr.RECIPE_COMMIT in str(err.value), "the error says how to get the pinned page"
    assert hashlib.sha256(PAGE.encode()).hexdigest() != rr.RECIPE_SHA256


def test_our_verdict_is_fail_when_any_rule_fails():
    def case(rule: str, resource: str, result: str) -> kyverno_eval.Case:
        return kyverno_eval.Case(Path("t"), "p", rule, resource, "Pod", result)

    test = kyverno_eval.TestSuite(Path("t"), [], [], {}, {}, "", [],
                                  cases=[case("a", "x", "pass"), case("b", "serving/x", "fail"), case("a", "y", "pass")])
    assert rr.our_verdict(test, "x") == "fail"
    assert rr.our_verdict(test, "y") == "pass"
    with pytest.raises(rr.RecipeError, match="no result for regression case z"):
        rr.our_verdict(test, "z")


@pytest.mark.parametrize("reg", rr.REGRESSIONS, ids=lambda r: r.recipe_rule)
def test_each_suite_expects_our_verdicts_over_the_recipe_policy(reg, tmp_path):
    policy_text = f"apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: {reg.recipe_policy}\n"
    verdicts = rr.write_suite(reg, policy_text, tmp_path / "suite")
    test = yaml_io.load((tmp_path / "suite" / "kyverno-test.yaml").read_text())
    assert (tmp_path / "suite" / "policy.yaml").read_text() == policy_text
    assert {(r["resources"][0], r["result"]) for r in test["results"]} == set(verdicts.items())
    assert {r["policy"] for r in test["results"]} == {reg.recipe_policy}
    assert {r["rule"] for r in test["results"]} == {reg.recipe_rule}
    resources = [d["metadata"]["name"] for d in yaml.safe_load_all((tmp_path / "suite" / "resources.yaml").read_text())]
    assert resources == list(reg.cases)
    assert ("variables" in test) == bool(reg.namespace_labels)


def test_a_missing_case_is_refused(tmp_path):
    reg = rr.Regression("p", "r", "guardrail-memory-bounds", ("no-such-case",), "why")
    with pytest.raises(rr.RecipeError, match="no-such-case"):
        rr.write_suite(reg, "", tmp_path / "suite")


def _row(case: str, result: str, reason: str) -> kyverno_parity.Row:
    return kyverno_parity.Row("t", "p", "r", f"v1/Pod/serving/{case}", result, reason, "")


@pytest.mark.parametrize("result, reason, regression", [
    ("Fail", "Want pass, got fail", True),      # the recipe decides otherwise: a regression
    ("Pass", "Ok", False),                      # the recipe agrees with us
    ("Pass", "Excluded", False),                # the recipe does not select the case
])
def test_only_rows_the_recipe_decides_otherwise_count(monkeypatch, tmp_path, result, reason, regression):
    reg = rr.REGRESSIONS[0]
    monkeypatch.setattr(rr, "REGRESSIONS", (reg,))
    monkeypatch.setattr(kyverno_parity, "run_cli",
                        lambda cli, folder: ([_row(c, result, reason) for c in reg.cases], 0, 0, ""))
    policies = {reg.recipe_policy: "kind: ClusterPolicy\n"}
    if regression:
        lines = rr.check_validate_rules(Path("cli"), policies, tmp_path)
        assert len(lines) == len(reg.cases)
    else:
        with pytest.raises(rr.RecipeError, match="not a regression"):
            rr.check_validate_rules(Path("cli"), policies, tmp_path)


def test_recipe_network_policy_is_the_rules_data_in_the_namespace():
    np = rr.recipe_network_policy(rr.extract_policies(PAGE)["egress"].replace(
        "name: egress", f"name: {rr.EGRESS_POLICY[0]}"), "ai-locked")
    assert np["metadata"] == {"name": "locked", "namespace": "ai-locked"}
    assert np["kind"] == "NetworkPolicy" and np["spec"]["policyTypes"] == ["Egress"]


def test_dns_is_decided_by_nca():
    from tools import nca

    if not nca.nca_available():
        pytest.skip("network-config-analyzer (package `nca`, requirements.txt) is not installed in this Python")
    np = rr.recipe_network_policy(rr.extract_policies(PAGE)["egress"].replace(
        "name: egress", f"name: {rr.EGRESS_POLICY[0]}"), "ai-locked")
    assert rr.dns_reachability(np) == (False, False), "a namespace named kube-dns holds no cluster DNS"
    np["spec"]["egress"][0]["to"] = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                      "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert rr.dns_reachability(np) == (True, False), "UDP only, as the rule's port list says"


def test_without_a_page_the_tool_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.delenv("RECIPE_PAGE", raising=False)
    assert rr.main([]) == 2
    assert rr.RECIPE_REPO in capsys.readouterr().err
