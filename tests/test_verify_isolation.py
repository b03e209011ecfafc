"""`make verify` AGENT-a..e: the live agent-admission checks' pods and decisions, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kyverno_cel  # noqa: E402

from components import workload_isolation as wi  # noqa: E402
from components.config import AgentIsolationConfig  # noqa: E402
from tools import verify  # noqa: E402


class FakeApiException(Exception):
    def __init__(self, status, body):
        super().__init__(body)
        self.status, self.body = status, body


DENIAL = ('admission webhook "validate.kyverno.svc-fail" denied the request: agent-runtime-isolation: '
          "require-gvisor-runtime: Agent Pods must run under GKE Sandbox: set spec.runtimeClassName: gvisor")


@pytest.mark.parametrize("check", sorted(verify.AGENT_CASES))
def test_live_pods_are_what_the_policy_judges(check):
    # The pods the live check sends are evaluated offline by the same policy: AGENT-a passes every
    # rule, each other case fails exactly the rule it targets.
    _, change, word = verify.AGENT_CASES[check]
    pod = verify.agent_pod(check.lower(), change)
    pod["metadata"]["namespace"] = "agents"
    policy = wi.agent_admission_policy(AgentIsolationConfig(enabled=True, namespaces=["agents"]), "Enforce")
    failed = []
    for rule in policy["spec"]["rules"]:
        out = kyverno_cel.evaluate_rule(rule, pod, "CREATE", "alice", [], {})
        assert out.result in ("pass", "fail"), f"{check}: {rule['name']} -> {out.result} {out.message}"
        if out.result == "fail":
            failed.append((rule["name"], out.message))
    if word is None:
        assert failed == [], f"{check}: the compliant pod fails {failed}"
    else:
        assert len(failed) == 1 and word in failed[0][1], f"{check}: must fail one rule naming {word!r}, got {failed}"


def test_classify_agent():
    assert verify.classify_agent(None, None, "Enforce")[0] == "PASS"
    assert verify.classify_agent(None, FakeApiException(403, 'runtimeclass "gvisor" not found'), "Enforce")[0] == "FAIL"
    assert verify.classify_agent("gvisor", FakeApiException(400, DENIAL), "Enforce")[0] == "PASS"
    assert verify.classify_agent("gvisor", None, "Enforce")[0] == "FAIL"
    assert verify.classify_agent("hostPath", FakeApiException(400, DENIAL), "Enforce")[0] == "FAIL", "wrong rule"
    assert verify.classify_agent("gvisor", None, "Audit")[0] == "SKIP"


def test_agent_checks_off_without_agent_isolation():
    settings = verify.stack_settings("prod")
    assert verify.agent_isolation(object(), settings) == [], "prod: agent isolation off, no AGENT rows"


def test_classify_network_logging():
    obj = {"spec": {"cluster": {"deny": {"log": True, "delegate": False}, "allow": {"log": False, "delegate": False}}}}
    assert verify.classify_network_logging(obj, denied=True, allowed=False)[0] == "PASS"
    assert verify.classify_network_logging(obj, denied=True, allowed=True)[0] == "FAIL"
    assert verify.classify_network_logging({"spec": {}}, denied=True, allowed=False)[0] == "FAIL"
    assert verify.classify_network_logging(None, denied=True, allowed=False)[0] == "FAIL"


def test_network_logging_check_reads_the_singleton():
    calls = []

    class Api:
        def get_cluster_custom_object(self, *args):
            calls.append(args)
            return {"spec": {"cluster": {"deny": {"log": True}}}}

    rows = verify.network_logging(verify.stack_settings("dev"), Api())
    assert calls == [("networking.gke.io", "v1alpha1", "networkloggings", "default")]
    assert [(r.check, r.status) for r in rows] == [("LOG-a", "PASS")]
    assert verify.network_logging(verify.stack_settings("prod"), Api()) == [], "prod: logging off, no LOG row"
