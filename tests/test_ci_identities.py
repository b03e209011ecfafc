"""CI identities as the README sets them up: every workloadIdentityUser binding, its pool's attribute condition
(evaluated with cel-expr-python against GitHub OIDC claims), the roles, the GitHub environment table, and the
Kubernetes side of the preview identity (k8s/ci/preview-<stack>.yaml)."""

import pathlib
import re

import pytest
import yaml

from tests import ci_identity
from tests.kyverno_cel import compile_expr

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SETUP = ci_identity.readme_setup(README)
REPO = SETUP.variables["REPO"]
ENVIRONMENTS = ("dev", "prod", "dev-preview", "prod-preview")
DEPLOY_WF = f"{REPO}/.github/workflows/deploy.yaml@refs/heads/main"


def binding_for(sa, setup=SETUP):
    found = [m for s, m in setup.wif_bindings if s == sa]
    assert len(found) == 1, f"{sa}: exactly one workloadIdentityUser binding, got {found}"
    member = ci_identity.parse_member(found[0])
    assert member, f"{sa}: member {found[0]!r} is not a principalSet of a pool"
    return member


def binding_problems(setup, environment):
    """What is wrong with the binding of `environment`'s identity (empty: it pins what it must)."""
    sa = ci_identity.expected_identity(environment)
    found = [m for s, m in setup.wif_bindings if s == sa]
    if len(found) != 1:
        return [f"{sa}: exactly one workloadIdentityUser binding, got {found}"]
    member = ci_identity.parse_member(found[0])
    if not member:
        return [f"{sa}: member {found[0]!r} is not a principalSet of a pool"]
    problems = []
    if member["attr"] != "environment" or member["value"] != environment:
        problems.append(f"{sa}: the binding itself must pin attribute.environment/{environment}, got {member}")
    condition = setup.conditions.get(member["pool"])
    if not condition:
        return problems + [f"{sa}: pool {member['pool']} has no provider with an attribute condition"]
    claims_ = ci_identity.pinned_claims(condition)
    if claims_.get("repository") != REPO:
        problems.append(f"{member['pool']}: the condition must pin the repository: {condition}")
    if claims_.get("environment") != environment:
        problems.append(f"{member['pool']}: the condition must pin environment {environment}: {condition}")
    mapping = ci_identity.mapped_attributes(setup.mappings.get(member["pool"], ""))
    if mapping.get("attribute.environment") != "assertion.environment":
        problems.append(f"{member['pool']}: attribute.environment must be mapped from assertion.environment")
    if environment in ("dev", "prod"):
        if claims_.get("ref") != "refs/heads/main":
            problems.append(f"{sa}: a deployer only from refs/heads/main: {condition}")
        if claims_.get("event_name") != "push":
            problems.append(f"{sa}: a deployer only on push: {condition}")
        if claims_.get("job_workflow_ref") != DEPLOY_WF:
            problems.append(f"{sa}: a deployer only from deploy.yaml on main: {condition}")
    elif claims_.get("event_name") != "pull_request":
        problems.append(f"{sa}: preview identities serve pull requests only: {condition}")
    return problems


def test_readme_creates_one_identity_per_stack_and_purpose():
    want = {ci_identity.expected_identity(env) for env in ENVIRONMENTS}
    assert SETUP.service_accounts == want
    assert {sa for sa, _ in SETUP.wif_bindings} == want, "every identity, and only these, is federated"
    pools = [binding_for(sa)["pool"] for sa in want]
    assert len(set(pools)) == 4, f"one pool per identity (a principalSet spans its whole pool): {pools}"
    assert all(m.startswith("principalSet://iam.googleapis.com/projects/<") for _, m in SETUP.wif_bindings), \
        "project numbers come from `gcloud projects describe`"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_binding_pins_repository_environment_and_for_deployers_ref(environment):
    assert binding_problems(SETUP, environment) == []


OLD_README_BINDING = (
    "gcloud iam workload-identity-pools providers create-oidc github --project \"$PROD\" --location global "
    "--workload-identity-pool github --issuer-uri \"$ISSUER\" --attribute-mapping "
    "google.subject=assertion.sub,attribute.repository=assertion.repository "
    "--attribute-condition \"assertion.repository == '${REPO}'\"\n"
    "gcloud iam service-accounts add-iam-policy-binding \"pulumi-prod-deployer@${PROD}.iam.gserviceaccount.com\" "
    "--project \"$PROD\" --role roles/iam.workloadIdentityUser --member "
    "\"principalSet://iam.googleapis.com/projects/${PROD_NUMBER}/locations/global/workloadIdentityPools/github/"
    "attribute.repository/${REPO}\"\n")


@pytest.mark.parametrize("environment,edit,expected", [
    ("prod", lambda t: t.replace("assertion.environment == 'prod' && ", ""), "must pin environment prod"),
    ("prod", lambda t: t.replace("assertion.ref == 'refs/heads/main' && assertion.event_name == 'push' && assertion.job_workflow_ref == '${REPO}/.github/workflows/deploy.yaml@refs/heads/main'\"\ngcloud iam workload-identity-pools create github-prod-preview",
                                 "assertion.event_name == 'push'\"\ngcloud iam workload-identity-pools create github-prod-preview"),
     "only from refs/heads/main"),
    ("prod-preview", lambda t: t.replace("assertion.repository == '${REPO}' && assertion.environment == 'prod-preview'",
                                         "assertion.environment == 'prod-preview'"), "must pin the repository"),
    ("prod", lambda t: t.replace("github-prod-deploy/attribute.environment/prod\"", "github-prod-deploy/*\""),
     "binding itself must pin"),
    ("prod", lambda t: t.replace("```bash\nREPO=", "```bash\n" + "REPO=", 1).replace(
        "# Each service account trusts only its own pool", OLD_README_BINDING + "# Each service account trusts only its own pool"),
     "exactly one workloadIdentityUser binding"),
])
def test_binding_check_refuses_each_weakened_readme(environment, edit, expected):
    edited = edit(README)
    assert edited != README, "the edit must change the README"
    problems = binding_problems(ci_identity.readme_setup(edited), environment)
    assert any(expected in p for p in problems), f"expected {expected!r}: {problems}"


def claims(**over):
    base = {"repository": REPO, "repository_owner": REPO.split("/")[0], "ref": "refs/heads/main",
            "event_name": "push", "environment": "prod", "job_workflow_ref": DEPLOY_WF,
            "sub": f"repo:{REPO}:environment:prod"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


PR = dict(event_name="pull_request", ref="refs/pull/7/merge", base_ref="main",
          job_workflow_ref=f"{REPO}/.github/workflows/pr.yaml@refs/pull/7/merge")
TOKENS = {
    "deploy.yaml on main, env prod": (claims(), {"prod"}),
    "deploy.yaml on main, env dev": (claims(environment="dev"), {"dev"}),
    "PR preview, env prod-preview": (claims(environment="prod-preview", **PR), {"prod-preview"}),
    "PR preview, env dev-preview": (claims(environment="dev-preview", **PR), {"dev-preview"}),
    "PR job claiming env prod": (claims(environment="prod", **PR), set()),
    "PR job claiming env dev": (claims(environment="dev", **PR), set()),
    "PR job without environment": (claims(environment=None, **PR), set()),
    "PR edits deploy.yaml and runs it": (claims(**{**PR, "job_workflow_ref": f"{REPO}/.github/workflows/deploy.yaml@refs/pull/7/merge"}), set()),
    "push to a branch, env prod": (claims(ref="refs/heads/evil", job_workflow_ref=f"{REPO}/.github/workflows/deploy.yaml@refs/heads/evil"), set()),
    "workflow_dispatch on main, env prod": (claims(event_name="workflow_dispatch"), set()),
    "another workflow on main, env prod": (claims(job_workflow_ref=f"{REPO}/.github/workflows/other.yaml@refs/heads/main"), set()),
    "another repository, env prod": (claims(repository="someone/llm-platform"), set()),
    "fork-named PR preview": (claims(environment="prod-preview", repository="someone/llm-platform", **PR), set()),
    "PR into another base branch, env prod-preview": (claims(environment="prod-preview", **{**PR, "base_ref": "release"}),
                                                      set()),
    "PR into another base branch, env dev-preview": (claims(environment="dev-preview", **{**PR, "base_ref": "release"}),
                                                     set()),
    "another workflow in a PR, env prod-preview": (claims(environment="prod-preview", **{
        **PR, "job_workflow_ref": f"{REPO}/.github/workflows/evil.yaml@refs/pull/7/merge"}), set()),
    "another workflow in a PR, env dev-preview": (claims(environment="dev-preview", **{
        **PR, "job_workflow_ref": f"{REPO}/.github/workflows/evil.yaml@refs/pull/7/merge"}), set()),
    "another repository, env dev": (claims(environment="dev", repository="someone/llm-platform"), set()),
    "push to a branch, env dev": (claims(environment="dev", ref="refs/heads/evil",
                                         job_workflow_ref=f"{REPO}/.github/workflows/deploy.yaml@refs/heads/evil"), set()),
    "workflow_dispatch on main, env dev": (claims(environment="dev", event_name="workflow_dispatch"), set()),
    "another workflow on main, env dev": (claims(environment="dev",
                                                 job_workflow_ref=f"{REPO}/.github/workflows/other.yaml@refs/heads/main"),
                                          set()),
    # a branch workflow calling deploy.yaml@main as a reusable workflow: only the ref pin keeps it out
    "branch calls deploy.yaml@main, env prod": (claims(ref="refs/heads/evil"), set()),
    "branch calls deploy.yaml@main, env dev": (claims(environment="dev", ref="refs/heads/evil"), set()),
    "another repository PR, env dev-preview": (claims(environment="dev-preview", repository="someone/llm-platform", **PR),
                                               set()),
    # pull_request_target runs in the base repository's context with its secrets: not a preview trigger
    "pull_request_target, env prod-preview": (claims(environment="prod-preview",
                                                     **{**PR, "event_name": "pull_request_target"}), set()),
    "pull_request_target, env dev-preview": (claims(environment="dev-preview",
                                                    **{**PR, "event_name": "pull_request_target"}), set()),
}


def _reached(setup, claim_set):
    got = set()
    for environment in ENVIRONMENTS:
        member = binding_for(ci_identity.expected_identity(environment), setup)
        accepted = ci_identity.condition_accepts(setup.conditions[member["pool"]], claim_set)
        if accepted and claim_set.get(member["attr"]) == member["value"]:
            got.add(environment)
    return got


_CONDITIONS = re.findall(r'--attribute-condition "([^"]+)"', README)
CLAUSES = [(i, clause) for i, cond in enumerate(_CONDITIONS) for clause in cond.split(" && ")]


@pytest.mark.parametrize("index,clause", CLAUSES, ids=[f"{i}:{c.split(' ')[0]}" for i, c in CLAUSES])
def test_the_token_matrix_notices_each_condition_clause_dropped(index, clause):
    """Every clause of every pool's condition has a token in TOKENS that only that clause keeps out.

    The environment clause is the exception: the binding's principalSet pins attribute.environment too, so
    dropping it from the condition alone lets nothing through; the binding's own pin is checked instead."""
    pinned_env = re.fullmatch(r"assertion\.environment == '([a-z-]+)'", clause)
    if pinned_env:
        member = binding_for(ci_identity.expected_identity(pinned_env.group(1)))
        assert (member["attr"], member["value"]) == ("environment", pinned_env.group(1)), member
        return
    weakened_condition = " && ".join(c for c in _CONDITIONS[index].split(" && ") if c != clause)
    edited = README.replace(f'"{_CONDITIONS[index]}"', f'"{weakened_condition}"', 1)
    assert edited != README
    setup = ci_identity.readme_setup(edited)
    leaks = [name for name, (claim_set, want) in TOKENS.items() if _reached(setup, claim_set) != want]
    assert leaks, f"dropping {clause!r} from condition {index} lets no token of TOKENS through: add one"


@pytest.mark.parametrize("token", TOKENS)
def test_only_the_intended_tokens_reach_each_identity(token):
    """Google STS accepts a token for a pool when the provider's condition is true and the binding's attribute
    matches; each pool's condition is evaluated as CEL over the token's claims."""
    claim_set, want = TOKENS[token]
    got = _reached(SETUP, claim_set)
    assert got == want, f"{token}: reaches {sorted(got) or 'nothing'}, must reach {sorted(want) or 'nothing'}"


def test_the_old_repository_wide_binding_is_refused():
    """The previous setup: condition on the repository only, binding on attribute.repository."""
    old = f"assertion.repository == '{REPO}'"
    pr_claims = claims(environment="prod", **PR)
    assert ci_identity.condition_accepts(old, pr_claims), "sanity: the old condition let a PR through"
    assert ci_identity.pinned_claims(old).get("environment") is None
    assert not ci_identity.condition_accepts(SETUP.conditions["github-prod-deploy"], pr_claims)


def test_preview_identities_hold_no_write_role_and_deployers_no_owner_role():
    for environment in ENVIRONMENTS:
        sa = ci_identity.expected_identity(environment)
        roles = SETUP.roles.get(sa, set())
        assert roles, f"{sa}: no roles granted in the README"
        if environment.endswith("-preview"):
            assert all(r.endswith(("Viewer", "viewer")) for r in roles), f"{sa}: preview roles must be viewers: {roles}"
        else:
            assert "roles/storage.objectAdmin" in roles and "roles/container.admin" in roles, roles
        assert not roles & {"roles/owner", "roles/editor", "roles/iam.serviceAccountTokenCreator",
                            "roles/iam.workloadIdentityUser"}, f"{sa}: {roles}"


def test_environment_table_points_each_environment_at_its_own_pool():
    section = ci_identity.readme_section(README)
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z-]+)` \|.*$", section, re.M)
            if m.group(1) in ENVIRONMENTS}
    assert set(rows) == set(ENVIRONMENTS), f"README environment table rows: {sorted(rows)}"
    for environment, row in rows.items():
        pool = binding_for(ci_identity.expected_identity(environment))["pool"]
        assert f"/workloadIdentityPools/{pool}/providers/github" in row, f"{environment}: provider must be {pool}"
        stack = environment.split("-")[0]
        assert f"gs://llm-platform-{stack}-pulumi-state" in row, f"{environment}: its own stack's state bucket"
        if environment in ("prod", "prod-preview"):
            assert "required reviewers" in row, f"{environment} needs required reviewers"
        if environment in ("dev", "prod"):
            assert "`main` only" in row, f"{environment}: deployment branches main only"
    assert "no repository-level secrets" in section


# ------------------------------------------------------------------------- Kubernetes side of previews

def manifests(stack):
    return [d for d in yaml.safe_load_all((ROOT / "k8s" / "ci" / f"preview-{stack}.yaml").read_text()) if d]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_preview_rbac_manifests_are_valid_and_bind_only_the_stacks_preview_identity(stack):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = manifests(stack)
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, "1.33.0", strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"k8s/ci/preview-{stack}.yaml {doc['kind']}/{doc['metadata']['name']}: {e}")
    sa = ci_identity.expected_identity(f"{stack}-preview")
    subjects = [s for kind in ("ClusterRoleBinding", "RoleBinding") for b in by_kind(docs, kind) for s in b["subjects"]]
    assert subjects and all(s == {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": sa} for s in subjects), subjects


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_preview_rbac_is_least_privilege(stack):
    docs = manifests(stack)
    (cluster_role,) = by_kind(docs, "ClusterRole")
    for rule in cluster_role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], f"ClusterRole rule too wide: {rule}"
        assert not set(rule["verbs"]) & {"delete", "deletecollection", "escalate", "bind", "impersonate"}, rule
        assert not set(rule["apiGroups"]) & {"rbac.authorization.k8s.io", "admissionregistration.k8s.io"}, \
            f"preview may not touch RBAC or admission objects (policies do not guard their own kind): {rule}"
        assert "secrets" not in rule["resources"], "no cluster-wide Secret read"
    # A Helm Release preview renders client-side and reads nothing; Kyverno's TLS keys are Secrets in `kyverno`.
    assert by_kind(docs, "Role") == [] and by_kind(docs, "RoleBinding") == [], \
        f"k8s/ci/preview-{stack}.yaml: the preview identity needs no namespaced Role (no Secret reads)"


PLURAL = {"Namespace": "namespaces", "NamespacePatch": "namespaces", "NetworkPolicy": "networkpolicies",
          "CustomResourceDefinition": "customresourcedefinitions", "ClusterPolicy": "clusterpolicies",
          "PolicyException": "policyexceptions",
          "NetworkLoggingPatch": "networkloggings", "FQDNNetworkPolicy": "fqdnnetworkpolicies"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_preview_rbac_covers_every_kind_the_stack_dry_runs(stack, program_run):
    """Every Kubernetes object the program registers is dry-run applied at preview: the role must allow it,
    or the PR preview fails with Forbidden. (Helm Releases render client-side at preview.)"""
    (cluster_role,) = by_kind(manifests(stack), "ClusterRole")
    allowed = {(g, r) for rule in cluster_role["rules"] if {"create", "patch", "update"} <= set(rule["verbs"])
               for g in rule["apiGroups"] for r in rule["resources"]}
    for res in program_run(stack):
        if not res.type.startswith("kubernetes:") or res.type.startswith(("kubernetes:helm.sh/", "pulumi:")):
            continue
        group_version, kind = res.type.split(":")[1], res.type.split(":")[2]
        group = group_version.rsplit("/", 1)[0] if "/" in group_version else ""
        group = "" if group == "core" else group
        assert kind in PLURAL, f"{res.type}: new kind, add it to the preview ClusterRole and PLURAL"
        assert (group, PLURAL[kind]) in allowed, \
            f"{res.type} {res.name}: preview identity cannot dry-run it (k8s/ci/preview-{stack}.yaml)"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_admission_policy_denies_the_preview_identity_anything_but_dry_run(stack):
    docs = manifests(stack)
    (policy,) = by_kind(docs, "ValidatingAdmissionPolicy")
    (binding,) = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rules,) = spec["matchConstraints"]["resourceRules"]
    assert set(rules["operations"]) == {"CREATE", "UPDATE", "DELETE", "CONNECT"} and rules["resources"] == ["*/*"]
    (match,) = spec["matchConditions"]
    (validation,) = spec["validations"]
    sa = ci_identity.expected_identity(f"{stack}-preview")
    deployer = ci_identity.expected_identity(stack)

    def run(expression, username, dry_run):
        request = {"operation": "UPDATE", "userInfo": {"username": username, "groups": ["system:authenticated"]}}
        if dry_run is not None:
            request["dryRun"] = dry_run
        value = compile_expr(expression).eval(data={"request": request, "object": {}, "oldObject": None,
                                                    "namespaceObject": None, "variables": {}})
        return value.plain_value()

    assert run(match["expression"], sa, False) is True, "the policy applies to the preview identity"
    assert run(match["expression"], deployer, False) is False, "the deployer is not restricted"
    assert run(validation["expression"], sa, True) is True, "dry-run passes"
    assert run(validation["expression"], sa, False) is False, "a real write by the preview identity is denied"
    assert run(validation["expression"], sa, None) is False, "a request without dryRun is denied"


def test_workflow_identities_are_the_readme_identities():
    """The service account each workflow job uses is the one the README federates for that environment."""
    for wf in ("pr.yaml", "deploy.yaml"):
        doc = yaml.safe_load((ROOT / ".github" / "workflows" / wf).read_text())
        for job in ci_identity.credentialed_jobs(doc, wf):
            member = binding_for(job.service_account)
            assert member["value"] == job.environment, \
                f"{wf} job {job.job} {job.matrix}: {job.service_account} is federated for {member['value']}, runs in {job.environment}"
