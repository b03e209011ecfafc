"""tools/e2e.py without engines: arguments, the summary line, the e2e stack config, and the pure helpers."""

from __future__ import annotations

import copy
import json
import pathlib
import re

import pytest

from components import config, yaml_io
from tools import e2e, e2e_kube, e2e_psa, e2e_webhook, mockrun

KUBECONFIG = "/tmp/llm-platform-e2e-test/cluster/kubeconfig"
CHART = "/tmp/llm-platform-e2e-test/chart/kyverno"


# ------------------------------------------------------------------ arguments and output


def test_defaults_run_every_scenario_in_order():
    args = e2e.parse_args([])
    assert args.only is None and args.keep_logs is None and not args.list
    assert e2e.selected(args.only) == list(e2e.NAMES)
    assert e2e.NAMES == ("preview", "up", "up-idempotent", "pod-security", "webhook-config", "security-off",
                         "destroy-clean", "first-deploy-plan", "apiserver-parity", "declared-tenants")


def test_only_adds_what_a_scenario_needs():
    assert e2e.selected(e2e.parse_args(["--only", "pod-security"]).only) == ["up", "pod-security"]
    assert e2e.selected(["first-deploy-plan"]) == ["first-deploy-plan"]
    assert e2e.selected(["destroy-clean", "preview"]) == ["preview", "up", "destroy-clean"]


def test_unknown_scenario_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exc:
        e2e.parse_args(["--only", "upp"])
    assert exc.value.code == 2
    assert "invalid choice: 'upp'" in capsys.readouterr().err


def test_result_lines_and_the_one_summary_line():
    results = [e2e.Result("preview", True), e2e.Result("up", False, "boom"), e2e.Result("pod-security", True)]
    assert [r.line() for r in results] == ["PASS preview", "FAIL up: boom", "PASS pod-security"]
    assert e2e.summary(results) == "e2e: 2 passed, 1 failed"
    assert e2e.exit_code(results) == 1
    assert e2e.summary([]) == "e2e: 0 passed, 0 failed" and e2e.exit_code([]) == 0
    assert e2e.exit_code(results[:1]) == 0


def test_a_known_failure_fails_the_run_only_once_it_passes():
    failing = [e2e.Result("preview", True), e2e.Result("first-deploy-plan", False, "violates plan")]
    known = ["first-deploy-plan"]
    assert e2e.exit_code(failing, known) == 0
    assert e2e.summary(failing, known) == "e2e: 1 passed, 1 failed (1 known: first-deploy-plan)"
    fixed = [e2e.Result("preview", True), e2e.Result("first-deploy-plan", True)]
    assert e2e.exit_code(fixed, known) == 1, "a known failure that passes must be noticed"
    assert e2e.exit_code([e2e.Result("preview", False, "x")] + failing[1:], known) == 1
    assert e2e.parse_args(["--known-failure", "first-deploy-plan"]).known_failure == known


def test_one_line_keeps_reasons_on_one_line():
    assert e2e.one_line("a\n  b\tc") == "a b c"
    long = e2e.one_line("x" * 1000, 50)
    assert len(long) == 50 and long.endswith("...")


def test_list_prints_the_scenarios_and_the_config(capsys):
    assert e2e.main(["--list", "--only", "webhook-config"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("up\nwebhook-config\n")
    assert "existingCluster" in out and "skipAwait: true" in out


# ------------------------------------------------------------------ the e2e stack config


@pytest.fixture(scope="module")
def cfg():
    return e2e.stack_config(KUBECONFIG, CHART)


def test_stack_config_is_dev_on_the_local_cluster(cfg):
    dev = yaml_io.load(e2e.SOURCE_STACK.read_text())["config"]
    assert set(dev) - set(cfg) == set(e2e.DROPPED), "only what a GKE cluster alone has is dropped"
    for key in set(dev) - set(e2e.DROPPED) - {"llm-platform:kyverno"}:
        assert cfg[key] == dev[key], f"{key} is dev's"
    assert {k: v for k, v in cfg["llm-platform:kyverno"].items() if k != "install"} == dev["llm-platform:kyverno"]


def test_stack_config_is_valid_and_uses_the_e2e_knobs(cfg):
    s = e2e.settings_of(cfg)
    assert s.cluster is None and s.existing_cluster is not None
    assert s.existing_cluster.kubeconfig == KUBECONFIG and s.existing_cluster.context == e2e.CONTEXT
    assert s.security and s.tenants and s.guardrails.enabled and s.agent_isolation.enabled
    install = s.kyverno.install
    assert (install.chart_path, install.skip_await, install.kubectl_commands) == (CHART, True, False)


def test_stack_config_passes_the_strict_model_and_registers_what_the_e2e_needs(cfg):
    from tools.render import strict_refusals

    raw = e2e.raw_config(cfg)
    records = mockrun.run(e2e.STACK, raw)
    assert strict_refusals(config.parse(raw, e2e.STACK), records) == []
    assert not [r for r in records if r.type.startswith("command:")], "no pulumi-command resource"
    (release,) = [r for r in records if r.type == "kubernetes:helm.sh/v3:Release"]
    assert release.inputs["chart"] == CHART and release.inputs["skipAwait"] is True
    assert "version" not in release.inputs and "repositoryOpts" not in release.inputs
    assert release.inputs["values"]["webhooksCleanup"] == {"enabled": False}, "no hook Job that never completes"
    policies = [r for r in records if r.type == "kubernetes:kyverno.io/v1:ClusterPolicy"]
    assert policies
    for p in policies:
        annotations = p.inputs["metadata"]["annotations"]
        assert annotations["pulumi.com/skipAwait"] == "true" and annotations["pulumi.com/waitFor"] == "condition=Ready", p.name


def test_dev_registers_no_skip_await_anywhere(program_run):
    records = program_run("dev")
    assert not [r.name for r in records if "pulumi.com/skipAwait" in str(r.inputs.get("metadata", {}))]
    (release,) = [r for r in records if r.type == "kubernetes:helm.sh/v3:Release"]
    assert release.inputs["skipAwait"] is False and release.inputs["chart"] == "kyverno"
    assert "webhooksCleanup" not in release.inputs["values"]


@pytest.mark.parametrize("install", [{"skipAwait": True}, {"kubectlCommands": False}, {"chartPath": "/charts/kyverno"}])
def test_the_knobs_are_refused_on_a_stack_that_creates_its_cluster(install):
    raw = mockrun.stack_config("dev")
    raw["llm-platform:kyverno"] = json.dumps({**json.loads(raw["llm-platform:kyverno"]), "install": install})
    with pytest.raises(config.ConfigError, match="kyverno.install is set but this stack creates a GKE cluster"):
        config.parse(raw, "dev")


def test_chart_path_must_be_absolute(cfg):
    bad = {**cfg, "llm-platform:kyverno": {**cfg["llm-platform:kyverno"], "install": {"chartPath": "charts/kyverno"}}}
    with pytest.raises(config.ConfigError, match="not an absolute path"):
        e2e.settings_of(bad)


# ------------------------------------------------------------------ the chart copy


def test_prepare_chart_drops_only_missing_and_disabled_subcharts(tmp_path):
    src = tmp_path / "mod" / "charts" / "kyverno"
    (src / "charts" / "crds").mkdir(parents=True)
    from components.kyverno import CHART_VERSION

    meta = {"name": "kyverno", "version": CHART_VERSION, "dependencies": [
        {"name": "crds", "condition": "crds.install"},
        {"name": "extra-api", "condition": "crds.install"},
        {"name": "server", "condition": "server.enabled"}]}
    (src / "Chart.yaml").write_text(yaml_io.dump(meta))
    (src / "values.yaml").write_text(yaml_io.dump({"crds": {"install": True}, "server": {"enabled": False}}))
    (tmp_path / "out").mkdir()
    chart, dropped = e2e.prepare_chart(tmp_path / "mod", tmp_path / "out", {"crds": {"install": False}})
    assert dropped == ["extra-api (crds.install=false)", "server (server.enabled=false)"]
    assert [d["name"] for d in yaml_io.load((chart / "Chart.yaml").read_text())["dependencies"]] == ["crds"]
    (tmp_path / "out2").mkdir()
    with pytest.raises(e2e.E2EError, match="extra-api is not in"):
        e2e.prepare_chart(tmp_path / "mod", tmp_path / "out2", {})


# ------------------------------------------------------------------ helpers


def test_subset_differences():
    live = {"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}
    assert e2e_kube.subset_differences({"metadata": {"labels": {"x": "1"}}, "spec": {"ports": [{"port": 80.0}]}}, live) == []
    assert e2e_kube.subset_differences({"metadata": {"labels": {"x": "2"}}}, live) == ["metadata.labels.x: want '2', live '1'"]
    assert e2e_kube.subset_differences({"spec": {"ports": []}}, live) == ["spec.ports: 0 items wanted, 1 live"]
    assert e2e_kube.subset_differences({"spec": {"egress": []}}, live) == ["spec.egress: missing (want [])"]


def test_pod_security_reasons_are_split_at_top_level_commas():
    message = ('pods "p" is forbidden: violates PodSecurity "restricted:v1.33": allowPrivilegeEscalation != false '
               '(container "a" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
               '(containers "a", "b" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true')
    assert e2e_kube.psa_reasons(message) == {"allowPrivilegeEscalation != false", "unrestricted capabilities", "runAsNonRoot != true"}
    assert e2e_kube.psa_reasons("admission webhook denied the request") is None


def test_checker_expectations_and_the_one_reason_worded_by_count():
    labels = {f"{e2e_psa.PSA}enforce": "baseline", f"{e2e_psa.PSA}enforce-version": "v1.33",
              f"{e2e_psa.PSA}warn": "restricted", f"{e2e_psa.PSA}warn-version": "v1.33"}
    escape = next(c for c in e2e_psa.cases() if c.name == "escape-host-network").obj
    assert e2e_psa.expected(labels, escape) == e2e_psa.Outcome(False, {"host namespaces"}, set())
    deployment = next(c for c in e2e_psa.cases() if c.name == "deployment-host-network").obj
    assert e2e_psa.expected(labels, deployment).allowed is True, "enforce never refuses a Deployment"
    want = e2e_psa.Outcome(False, {"forbidden AppArmor profiles"}, set())
    got = e2e_psa.Outcome(False, {"forbidden AppArmor profile"}, set())
    assert e2e_psa.differences(want, got) == "" and e2e_psa.wording(want, got)
    assert e2e_psa.differences(want, e2e_psa.Outcome(True, set(), set()))
    assert "not evaluated" in e2e_psa.differences(want, e2e_psa.Outcome(None, set(), set(), "HTTP 422"))


def test_cases_cover_the_test_file_and_the_grid_every_version():
    names = {c.name for c in e2e_psa.cases()}
    assert {"escape-host-network", "escape-privileged", "escape-hostpath-dev", "escape-host-pid", "plain",
            "privileged-ephemeralContainer", "cronjob-privileged", "probe-host", "windows-pod"} <= names
    assert len(names) == len(e2e_psa.cases()), "case names are unique"
    grid = e2e_psa.grid()
    assert len(grid) == 1 + len(e2e_psa.LEVELS) * len(e2e_psa.VERSIONS)
    assert all(len(ns) <= 63 for ns in grid)


@pytest.mark.parametrize("selector,parsed", [
    ("Pod", ("*", "*", "Pod", "")),
    ("Pod/ephemeralcontainers", ("*", "*", "Pod", "ephemeralcontainers")),
    ("apps/v1/Deployment", ("apps", "v1", "Deployment", "")),
    ("jobset.x-k8s.io/*/JobSet", ("jobset.x-k8s.io", "*", "JobSet", "")),
    ("v1/Pod", ("*", "v1", "Pod", "")),
    ("*/*", ("*", "*", "*", "*")),
])
def test_kyverno_kind_selectors(selector, parsed):
    assert e2e_webhook.parse_kind_selector(selector) == parsed


def test_reference_workloads_are_found_when_present():
    from tests import reference_platform

    reference_platform.reference_dir("workloads")  # skips, saying how to get it, when absent
    jobs = {o["metadata"]["name"] for o in e2e.reference_workloads() if o["kind"] == "Job"}
    assert {"gpu-job-a", "gpu-job-b"} <= jobs


def test_make_target_puts_the_engines_first_on_path():
    mk = (pathlib.Path(e2e.ROOT) / "mk" / "e2e.mk").read_text()
    assert "e2e: venv kube-engines pulumi-engines" in mk
    assert '$(PULUMI_CLI_DIR):$(PULUMI_K8S_DIR):$$PATH' in mk and "-m tools.e2e" in mk


def test_apiserver_parity_cases_get_the_model_verdict_each_case_states():
    from tools import e2e_model

    cases = e2e_model.cases("/charts/e2e-model")
    verdicts = e2e_model.model_verdicts("/charts/e2e-model")
    wrong = {c.resource: verdicts[c.resource] for c in cases if bool(verdicts[c.resource]) != c.model}
    assert wrong == {}, "tools/apiserver.py decides otherwise than the parity cases say"
    refused = {rule for c in cases for rule in verdicts[c.resource]}
    assert refused == {"namespace", "crd", "exists"}, "every kept rule the e2e can run has a case the model refuses"
    assert verdicts["unknown-name"] == [], "an object whose name is unknown at preview is not refused (rule retired)"
    assert {c.verdict for c in cases if c.rule.startswith("exists (")} == {"retire"}
    assert "apiserver-parity" in e2e.selected(None), "a default scenario: CI runs it"
    assert e2e.selected(["apiserver-parity"]) == ["apiserver-parity"], "needs nothing"


def test_apiserver_parity_reports_a_real_outcome_the_case_does_not_state():
    from tools import e2e_model

    chart = "/charts/e2e-model"
    agree = {c.resource: "refused" for c in e2e_model.cases(chart) if c.real == "fails"}
    rows, problems = e2e_model.compare(chart, agree)
    assert problems == [] and len(rows) == len(e2e_model.cases(chart)) + 1
    # A real up that decided otherwise: the strict create of an existing namespace failed (as 4.34 would), and the
    # second Helm release of a name went through.
    changed = {**agree, "ns-existing-strict": "AlreadyExists"}
    del changed["release-b"]
    _, problems = e2e_model.compare(chart, changed)
    assert len(problems) == 2 and any("existing namespace" in p for p in problems), problems
    # A race is reported, never a problem.
    _, problems = e2e_model.compare(chart, {**agree, "race-netpol-0": "NotFound"})
    assert problems == []
    assert any("1 of 4" in row for row in e2e_model.compare(chart, {**agree, "race-netpol-0": "NotFound"})[0])


# ------------------------------------------------------------------ agent pods, webhook coverage, declared tenants


def test_agent_cases_differ_from_the_restricted_agent_only_by_what_they_are_about():
    from components.workload_isolation import RUNTIME_CLASS

    labels = {f"{e2e_psa.PSA}enforce": "restricted", f"{e2e_psa.PSA}enforce-version": "v1.33"}
    cases = e2e_psa.agent_cases(RUNTIME_CLASS)
    assert [c.name for c, admit in cases if admit] == ["agent-restricted"]
    for case, admit in cases:
        assert case.obj["spec"]["runtimeClassName"] == RUNTIME_CLASS, case.name
        # the checker's view, at restricted: only the compliant agent is admitted
        assert e2e_psa.expected(labels, case.obj).allowed is admit, case.name
    refused = {c.name: e2e_psa.expected(labels, c.obj).enforce for c, admit in cases if not admit}
    assert refused["agent-host-network"] == {"host namespaces"} and "privileged" in refused["agent-privileged"]
    assert refused["agent-root"] == {"runAsNonRoot != true", "runAsUser=0"}, refused
    assert refused["agent-root-runAsNonRoot-false"] == {"runAsNonRoot != true"}, refused
    assert e2e_psa.agent_cases("x")[0][0].obj["spec"]["runtimeClassName"] == "x"
    dns1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    assert all(dns1123.match(c.obj["metadata"]["name"]) for c, _ in cases), "pod names the API server takes"


def _policy(name, kinds, conditions=None, rule="validate"):
    spec = {"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": kinds}}]}, rule: {}}]}
    if conditions:
        spec["webhookConfiguration"] = {"matchConditions": conditions}
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": name}, "spec": spec}


class _FakeKube:
    """Discovery of a cluster serving only Pods, and the given ClusterPolicies."""

    def __init__(self, policies):
        self.policies = policies

    def request(self, method, path, *args, **kwargs):
        if path.endswith("/clusterpolicies"):
            return e2e_kube.Response(200, {"items": self.policies})
        return e2e_kube.Response(404, {"message": "not found"})

    def find(self, group, version, kind, subresource=""):
        return [("", "v1", "pods", "", True)] if kind == "Pod" else []


def test_webhook_coverage_names_each_rendered_policy_and_its_conditions():
    cond = [{"name": "c", "expression": "request.namespace == 'agents'"}]
    policies = [_policy("plain", ["Pod"]), _policy("fine", ["Pod"], cond), _policy("stamp", ["Pod"], rule="mutate"),
                _policy("routes", ["HTTPRoute"], cond)]
    vwc, notes, placed = e2e_webhook.build(_FakeKube(policies))
    assert placed["plain"] == "validate.kyverno.svc-fail"
    assert placed["fine"] == "validate.kyverno.svc-fail-finegrained-fine"
    assert placed["stamp"] == e2e_webhook.NOT_PLACED_MUTATE_ONLY
    assert placed["routes"] == e2e_webhook.NOT_PLACED_NOT_SERVED and any("HTTPRoute" in n for n in notes)
    _, problems = e2e_webhook.coverage(policies[:3], placed, vwc)
    assert problems == []
    # A policy whose kinds are not served never reaches the API server: a problem, not a silent skip.
    _, problems = e2e_webhook.coverage(policies, placed, vwc)
    assert problems == [f"routes: {e2e_webhook.NOT_PLACED_NOT_SERVED}"]
    # A rendered policy that is not live, and a webhook whose matchConditions are not the policy's.
    _, problems = e2e_webhook.coverage([*policies[:3], _policy("absent", ["Pod"])], placed, vwc)
    assert problems == ["rendered but not live: absent"]
    changed = copy.deepcopy(policies[:3])
    changed[1]["spec"]["webhookConfiguration"]["matchConditions"][0]["expression"] = "true"
    _, problems = e2e_webhook.coverage(changed, placed, vwc)
    assert len(problems) == 1 and problems[0].startswith("fine: its matchConditions")
    assert e2e_webhook.coverage([], {}, {"webhooks": []})[1], "no policy at all is no proof"


def test_gateway_api_stand_ins_serve_the_route_guards_kinds():
    from components.tenant_boundaries import ROUTE_GUARD, policy_file

    policy = yaml_io.load(policy_file(ROUTE_GUARD).read_text(encoding="utf-8"))
    kinds = {k for r in policy["spec"]["rules"] for f in r["match"]["any"] for k in f["resources"]["kinds"]}
    crds = e2e_webhook.gateway_api_stand_ins()
    assert {c["spec"]["names"]["kind"] for c in crds} == kinds
    for crd in crds:
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{e2e_webhook.GATEWAY_API_GROUP}"
        assert [v["storage"] for v in crd["spec"]["versions"]].count(True) == 1
        assert "v1" in [v["name"] for v in crd["spec"]["versions"]]
        # the API server refuses a CRD of a *.k8s.io group without it
        assert crd["metadata"]["annotations"]["api-approved.kubernetes.io"]


def test_declared_tenants_config_and_read_failures():
    from components.tenants import existence_check_name
    from tools import e2e_tenants

    cfg = e2e.stack_config(KUBECONFIG, CHART)
    out = e2e_tenants.program_config(cfg, e2e.PROJECT)
    assert out[f"{e2e.PROJECT}:kyverno"]["createTenantNamespaces"] is False
    assert out[f"{e2e.PROJECT}:tenants"][-1] == e2e_tenants.MISSING
    assert cfg[f"{e2e.PROJECT}:kyverno"].get("createTenantNamespaces") is not False, "the e2e stack itself is unchanged"
    settings = e2e.settings_of(out)
    assert not settings.kyverno.create_tenant_namespaces and e2e_tenants.MISSING in settings.tenants
    urn = f"urn:pulumi:s::p::x$kubernetes:core/v1:Namespace::{existence_check_name(e2e_tenants.MISSING)}"
    by_urn = {urn: ["resource 'e2e-declared-missing' does not exist"], "urn:other::tenant-x-must-exist": ["no"]}
    assert e2e_tenants.read_failures(by_urn, e2e_tenants.MISSING) == ["resource 'e2e-declared-missing' does not exist"]
    assert e2e_tenants.read_failures(by_urn, e2e_tenants.PRESENT) == []
