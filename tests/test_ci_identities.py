"""CI identities as tools/ci_identities.py (the ci/identities program) registers them, under Pulumi mocks: every
workloadIdentityUser binding, its pool's attribute condition (evaluated with cel-expr-python against GitHub OIDC
claims, one negative token per clause), the roles and where they are granted, the stack files' node service
account, the GitHub environment table of docs/ci.md, and the Kubernetes side of the preview identity
(k8s/ci/preview-<stack>.yaml)."""

import copy
import pathlib
import re
import shutil

import pytest

from components import yaml_io
from tests import ci_identity
from tests.kyverno_cel import compile_expr
from tools import ci_identities

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = ci_identity.identities_config()
REPO = CONFIG["repository"]
MAINTAINER, OTHER = "1001", "2002"
MAINTAINERS_CONFIG = {**CONFIG, "prodApproval": "maintainers", "maintainers": [MAINTAINER]}
DEPLOY_WF = f"{REPO}/.github/workflows/deploy.yaml@refs/heads/main"


@pytest.fixture(scope="module")
def setups():
    """mode -> (Setup, identities): the committed config (reviewers) and the setup without reviewers."""
    out = {}
    for mode, config in (("reviewers", CONFIG), ("maintainers", MAINTAINERS_CONFIG)):
        settings = ci_identities.load_settings(config)
        out[mode] = (ci_identity.setup_from(ci_identity.run_identities(config)), ci_identities.identities(settings))
    return out


@pytest.fixture(scope="module")
def setup(setups):
    return setups["reviewers"][0]


def environments(idents):
    return [i.environment for i in idents]


def binding_for(sa, setup):
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
        if claims_.get("ref_protected") != "true":
            problems.append(f"{sa}: a deployer only from a protected main: {condition}")
        if claims_.get("job_workflow_ref") != DEPLOY_WF:
            problems.append(f"{sa}: a deployer only from deploy.yaml on main: {condition}")
    elif claims_.get("event_name") != "pull_request":
        problems.append(f"{sa}: preview identities serve pull requests only: {condition}")
    return problems


@pytest.mark.parametrize("mode", ["reviewers", "maintainers"])
def test_one_identity_per_stack_and_purpose_each_with_its_own_pool(setups, mode):
    setup, idents = setups[mode]
    want = {ci_identity.expected_identity(env) for env in environments(idents)}
    node_accounts = {ci_identities.stack_facts(s)[1] for s in ci_identities.STACKS}
    assert setup.service_accounts == want | node_accounts
    assert {sa for sa, _ in setup.wif_bindings} == want, "every identity, and only these, is federated"
    pools = [binding_for(sa, setup)["pool"] for sa in want]
    assert len(set(pools)) == len(want), f"one pool per identity (a principalSet spans its whole pool): {pools}"
    assert all(m.startswith(f"principalSet://iam.googleapis.com/projects/{ci_identity.PROJECT_NUMBER}/")
               for _, m in setup.wif_bindings), "the member is built from the pool's resource name (project number)"


def test_without_reviewers_no_pull_request_identity_exists_for_prod(setups):
    assert "prod-preview" in environments(setups["reviewers"][1])
    assert environments(setups["maintainers"][1]) == ["dev", "dev-preview", "prod"]


@pytest.mark.parametrize("mode", ["reviewers", "maintainers"])
def test_each_binding_pins_repository_environment_and_for_deployers_ref(setups, mode):
    setup, idents = setups[mode]
    for environment in environments(idents):
        assert binding_problems(setup, environment) == []


def _weaken(setup, pool, condition):
    edited = copy.deepcopy(setup)
    edited.conditions[pool] = condition
    return edited


@pytest.mark.parametrize("environment,edit,expected", [
    ("prod", lambda c: c.replace("assertion.environment == 'prod' && ", ""), "must pin environment prod"),
    ("prod", lambda c: c.replace("assertion.ref == 'refs/heads/main' && ", ""), "only from refs/heads/main"),
    ("prod", lambda c: c.replace("assertion.ref_protected == 'true' && ", ""), "only from a protected main"),
    ("prod-preview", lambda c: c.replace(f"assertion.repository == '{REPO}' && ", ""), "must pin the repository"),
    ("dev-preview", lambda c: c.replace("'pull_request'", "'push'"), "serve pull requests only"),
])
def test_binding_check_refuses_each_weakened_condition(setup, environment, edit, expected):
    pool = binding_for(ci_identity.expected_identity(environment), setup)["pool"]
    weakened = edit(setup.conditions[pool])
    assert weakened != setup.conditions[pool], "the edit must change the condition"
    problems = binding_problems(_weaken(setup, pool, weakened), environment)
    assert any(expected in p for p in problems), f"expected {expected!r}: {problems}"


def test_binding_check_refuses_a_pool_wide_member_and_a_second_binding(setup):
    sa = ci_identity.expected_identity("prod")
    pool_wide = copy.deepcopy(setup)
    pool_wide.wif_bindings = [(s, m.rsplit("/attribute.", 1)[0] + "/*" if s == sa else m) for s, m in setup.wif_bindings]
    assert any("binding itself must pin" in p for p in binding_problems(pool_wide, "prod"))
    second = copy.deepcopy(setup)
    second.wif_bindings.append((sa, f"principalSet://iam.googleapis.com/projects/1/locations/global/"
                                    f"workloadIdentityPools/github/attribute.repository/{REPO}"))
    assert any("exactly one workloadIdentityUser binding" in p for p in binding_problems(second, "prod"))


# ------------------------------------------------------------------------------------------ token matrix

def claims(**over):
    base = {"repository": REPO, "repository_owner": REPO.split("/")[0], "ref": "refs/heads/main",
            "ref_protected": "true", "event_name": "push", "environment": "prod", "job_workflow_ref": DEPLOY_WF,
            "actor_id": OTHER, "run_attempt": "1", "sub": f"repo:{REPO}:environment:prod"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


PR = dict(event_name="pull_request", ref="refs/pull/7/merge", ref_protected="false", base_ref="main",
          job_workflow_ref=f"{REPO}/.github/workflows/pr.yaml@refs/pull/7/merge")
DISPATCH = dict(event_name="workflow_dispatch", actor_id=MAINTAINER)
# name -> (claims, environments reached with reviewers, environments reached without reviewers (maintainers))
TOKENS = {
    "deploy.yaml on main, env prod": (claims(), {"prod"}, set()),
    "deploy.yaml on main, env dev": (claims(environment="dev"), {"dev"}, {"dev"}),
    # what deploy.yaml's up-prod sends on push: without reviewers, only a maintainer's dispatch deploys prod
    "push to main by a maintainer, env prod": (claims(actor_id=MAINTAINER), {"prod"}, set()),
    "maintainer dispatches deploy.yaml on main, env prod": (claims(**DISPATCH), set(), {"prod"}),
    "non-maintainer dispatches deploy.yaml on main, env prod": (claims(**{**DISPATCH, "actor_id": OTHER}), set(), set()),
    "maintainer dispatches on a branch, env prod": (claims(**DISPATCH, ref="refs/heads/evil", ref_protected="false",
                                                           job_workflow_ref=f"{REPO}/.github/workflows/deploy.yaml@refs/heads/evil"),
                                                    set(), set()),
    "maintainer dispatches another workflow on main, env prod": (
        claims(**DISPATCH, job_workflow_ref=f"{REPO}/.github/workflows/other.yaml@refs/heads/main"), set(), set()),
    "maintainer dispatches a protected branch calling deploy.yaml@main, env prod": (
        claims(**DISPATCH, ref="refs/heads/release"), set(), set()),
    "maintainer dispatch while main is unprotected, env prod": (claims(**DISPATCH, ref_protected="false"), set(), set()),
    "maintainer dispatch from another repository, env prod": (claims(**DISPATCH, repository="someone/llm-platform"),
                                                              set(), set()),
    "maintainer dispatch, env dev": (claims(**DISPATCH, environment="dev"), set(), set()),
    # a re-run keeps the first run's actor_id, whoever starts it: it would replay the maintainer's old commit
    "re-run of a maintainer's dispatch, env prod": (claims(**DISPATCH, run_attempt="2"), set(), set()),
    # with reviewers a re-run waits for the prod environment's reviewers again
    "re-run of a push to main, env prod": (claims(run_attempt="2"), {"prod"}, set()),
    "re-run of a push to main, env dev": (claims(environment="dev", run_attempt="2"), {"dev"}, {"dev"}),
    "re-run of a PR preview, env dev-preview": (claims(environment="dev-preview", run_attempt="3", **PR),
                                                {"dev-preview"}, {"dev-preview"}),
    "push to main while main is unprotected, env prod": (claims(ref_protected="false"), set(), set()),
    "push to main while main is unprotected, env dev": (claims(environment="dev", ref_protected="false"), set(), set()),
    "PR preview, env prod-preview": (claims(environment="prod-preview", **PR), {"prod-preview"}, set()),
    "PR preview, env dev-preview": (claims(environment="dev-preview", **PR), {"dev-preview"}, {"dev-preview"}),
    "PR job claiming env prod": (claims(environment="prod", **PR), set(), set()),
    "PR job claiming env dev": (claims(environment="dev", **PR), set(), set()),
    "PR job without environment": (claims(environment=None, **PR), set(), set()),
    "PR edits deploy.yaml and runs it": (claims(**{**PR, "job_workflow_ref": f"{REPO}/.github/workflows/deploy.yaml@refs/pull/7/merge"}),
                                         set(), set()),
    "push to a branch, env prod": (claims(ref="refs/heads/evil", ref_protected="false",
                                          job_workflow_ref=f"{REPO}/.github/workflows/deploy.yaml@refs/heads/evil"), set(), set()),
    # a protected release branch is still not main
    "push to a protected branch, env prod": (claims(ref="refs/heads/release",
                                                    job_workflow_ref=f"{REPO}/.github/workflows/deploy.yaml@refs/heads/release"),
                                             set(), set()),
    "workflow_dispatch on main, env dev": (claims(environment="dev", **{**DISPATCH, "actor_id": OTHER}), set(), set()),
    "another workflow on main, env prod": (claims(job_workflow_ref=f"{REPO}/.github/workflows/other.yaml@refs/heads/main"),
                                           set(), set()),
    "another repository, env prod": (claims(repository="someone/llm-platform"), set(), set()),
    "fork-named PR preview": (claims(environment="prod-preview", repository="someone/llm-platform", **PR), set(), set()),
    "PR into another base branch, env prod-preview": (claims(environment="prod-preview", **{**PR, "base_ref": "release"}),
                                                      set(), set()),
    "PR into another base branch, env dev-preview": (claims(environment="dev-preview", **{**PR, "base_ref": "release"}),
                                                     set(), set()),
    "another workflow in a PR, env prod-preview": (claims(environment="prod-preview", **{
        **PR, "job_workflow_ref": f"{REPO}/.github/workflows/evil.yaml@refs/pull/7/merge"}), set(), set()),
    "another workflow in a PR, env dev-preview": (claims(environment="dev-preview", **{
        **PR, "job_workflow_ref": f"{REPO}/.github/workflows/evil.yaml@refs/pull/7/merge"}), set(), set()),
    "another repository, env dev": (claims(environment="dev", repository="someone/llm-platform"), set(), set()),
    "push to a branch, env dev": (claims(environment="dev", ref="refs/heads/evil", ref_protected="false",
                                         job_workflow_ref=f"{REPO}/.github/workflows/deploy.yaml@refs/heads/evil"), set(), set()),
    "another workflow on main, env dev": (claims(environment="dev",
                                                 job_workflow_ref=f"{REPO}/.github/workflows/other.yaml@refs/heads/main"),
                                          set(), set()),
    # a branch workflow calling deploy.yaml@main as a reusable workflow: only the ref pin keeps it out
    "branch calls deploy.yaml@main, env prod": (claims(ref="refs/heads/evil", ref_protected="false"), set(), set()),
    "protected branch calls deploy.yaml@main, env prod": (claims(ref="refs/heads/release"), set(), set()),
    "branch calls deploy.yaml@main, env dev": (claims(environment="dev", ref="refs/heads/evil"), set(), set()),
    "another repository PR, env dev-preview": (claims(environment="dev-preview", repository="someone/llm-platform", **PR),
                                               set(), set()),
    # pull_request_target runs in the base repository's context with its secrets: not a preview trigger
    "pull_request_target, env prod-preview": (claims(environment="prod-preview",
                                                     **{**PR, "event_name": "pull_request_target"}), set(), set()),
    "pull_request_target, env dev-preview": (claims(environment="dev-preview",
                                                    **{**PR, "event_name": "pull_request_target"}), set(), set()),
}
MODES = {"reviewers": 1, "maintainers": 2}


def _reached(setup, idents, claim_set):
    got = set()
    for environment in environments(idents):
        member = binding_for(ci_identity.expected_identity(environment), setup)
        accepted = ci_identity.condition_accepts(setup.conditions[member["pool"]], claim_set)
        if accepted and claim_set.get(member["attr"]) == member["value"]:
            got.add(environment)
    return got


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("token", TOKENS)
def test_only_the_intended_tokens_reach_each_identity(setups, mode, token):
    """Google STS accepts a token for a pool when the provider's condition is true and the binding's attribute
    matches; each pool's condition is evaluated as CEL over the token's claims."""
    setup, idents = setups[mode]
    claim_set, want = TOKENS[token][0], TOKENS[token][MODES[mode]]
    got = _reached(setup, idents, claim_set)
    assert got == want, f"{mode}: {token}: reaches {sorted(got) or 'nothing'}, must reach {sorted(want) or 'nothing'}"


# The runs of deploy.yaml and pr.yaml, simulated from the workflow files (tests/ci_identity.py: which jobs their
# `if`s start under the mode variable, and the OIDC claims each credentialed job's token carries), and what each
# token reaches. job -> environment reached, or None: the job runs and Google STS refuses its token (fails closed).
PR_RUN = dict(ref="refs/pull/7/merge", ref_protected="false", base_ref="main")
WORKFLOW_RUNS = {
    # name: (event, ref, actor_id, extra, with reviewers, without reviewers (maintainers))
    "push to main": ("push", "refs/heads/main", OTHER, {},
                     {"up-dev": "dev", "up-prod": "prod"}, {"up-dev": "dev"}),
    "maintainer's push to main": ("push", "refs/heads/main", MAINTAINER, {},
                                  {"up-dev": "dev", "up-prod": "prod"}, {"up-dev": "dev"}),
    "re-run of a push to main": ("push", "refs/heads/main", OTHER, {"run_attempt": "2"},
                                 {"up-dev": "dev", "up-prod": "prod"}, {"up-dev": "dev"}),
    "maintainer dispatches main": ("workflow_dispatch", "refs/heads/main", MAINTAINER, {}, {}, {"up-prod": "prod"}),
    "non-maintainer dispatches main": ("workflow_dispatch", "refs/heads/main", OTHER, {}, {}, {"up-prod": None}),
    "re-run of a maintainer's dispatch": ("workflow_dispatch", "refs/heads/main", MAINTAINER, {"run_attempt": "2"},
                                          {}, {}),
    "maintainer dispatches a branch": ("workflow_dispatch", "refs/heads/evil", MAINTAINER,
                                       {"ref_protected": "false"}, {}, {}),
    "maintainer dispatches a protected branch": ("workflow_dispatch", "refs/heads/release", MAINTAINER, {}, {}, {}),
    "pull request": ("pull_request", PR_RUN["ref"], OTHER, PR_RUN,
                     {"preview": "dev-preview", "preview-prod": "prod-preview"}, {"preview": "dev-preview"}),
    "maintainer's pull request": ("pull_request", PR_RUN["ref"], MAINTAINER, PR_RUN,
                                  {"preview": "dev-preview", "preview-prod": "prod-preview"}, {"preview": "dev-preview"}),
    "fork pull request": ("pull_request", PR_RUN["ref"], OTHER, {**PR_RUN, "head_repository": "someone/llm-platform"},
                          {}, {}),
}


def workflow_tokens(mode, event, ref, actor, extra):
    variables = ((ci_identities.PROD_APPROVAL_VARIABLE, mode),) if mode else ()
    run_ = ci_identity.Run(event, ref, actor, variables, **{k: v for k, v in extra.items() if k != "ref"})
    for wf in ("deploy.yaml", "pr.yaml"):
        doc = yaml_io.load((ROOT / ".github" / "workflows" / wf).read_text())
        yield from ci_identity.run_tokens(doc, wf, run_, REPO)


@pytest.mark.parametrize("variable", ["", "reviewers", "maintainers"])
@pytest.mark.parametrize("name", WORKFLOW_RUNS)
def test_the_workflow_runs_tokens_reach_what_the_mode_allows(setups, variable, name):
    """Each run starts the jobs its mode allows, and each started job's token reaches its own identity, except a
    non-maintainer's dispatch, which STS refuses. The variable unset means reviewers."""
    mode = variable or "reviewers"
    setup, idents = setups[mode]
    event, ref, actor, extra, with_reviewers, without = WORKFLOW_RUNS[name]
    got = {}
    for cj, claim_set in workflow_tokens(variable, event, ref, actor, extra):
        reached = _reached(setup, idents, claim_set)
        assert len(reached) <= 1 and reached <= {cj.environment}, f"{cj.job}: reaches {reached}"
        got[cj.job] = next(iter(reached), None)
    want = with_reviewers if mode == "reviewers" else without
    assert got == want, f"{mode}: {name}: {got}, must be {want}"


def test_a_mode_mismatch_between_variable_and_identities_fails_closed(setups):
    """The variable and `prodApproval` disagree: the jobs the workflow starts for prod get nothing."""
    for variable, identities_mode in (("maintainers", "reviewers"), ("", "maintainers")):
        setup, idents = setups[identities_mode]
        for name, (event, ref, actor, extra, _, _) in WORKFLOW_RUNS.items():
            for cj, claim_set in workflow_tokens(variable, event, ref, actor, extra):
                if cj.environment.startswith("prod"):
                    assert _reached(setup, idents, claim_set) == set(), f"{variable} vs {identities_mode}: {name}, {cj.job}"


def test_the_identities_export_the_mode_variable(monkeypatch):
    """`pulumi stack output PROD_APPROVAL` is what the repository variable takes (docs/ci.md)."""
    import pulumi

    for config in (CONFIG, MAINTAINERS_CONFIG):
        exported = {}
        monkeypatch.setattr(pulumi, "export", lambda key, value, _e=exported: _e.__setitem__(key, value))
        ci_identity.run_identities(config)
        assert exported[ci_identities.PROD_APPROVAL_VARIABLE] == config.get("prodApproval", "reviewers")
    for wf in ("deploy.yaml", "pr.yaml"):
        assert f"vars.{ci_identities.PROD_APPROVAL_VARIABLE}" in (ROOT / ".github" / "workflows" / wf).read_text()


def _clauses():
    return list(_each_clause())


def _each_clause():
    for mode, config in (("reviewers", CONFIG), ("maintainers", MAINTAINERS_CONFIG)):
        for ident in ci_identities.identities(ci_identities.load_settings(config)):
            for clause in ident.clauses:
                yield pytest.param(mode, ident.environment, clause, id=f"{mode}:{ident.environment}:{clause.claim}")


@pytest.mark.parametrize("mode,environment,clause", _clauses())
def test_the_token_matrix_notices_each_condition_clause_dropped(setups, mode, environment, clause):
    """Every clause of every pool's condition, as the code writes it, has a token in TOKENS that only that clause
    keeps out: dropping it from the registered condition changes who gets in.

    The environment clause is the exception: the binding's principalSet pins attribute.environment too, so
    dropping it from the condition alone lets nothing through; the binding's own pin is checked instead."""
    setup, idents = setups[mode]
    member = binding_for(ci_identity.expected_identity(environment), setup)
    (ident,) = [i for i in idents if i.environment == environment]
    assert setup.conditions[member["pool"]] == ident.condition, "the registered condition is the code's"
    if clause.claim == "environment":
        assert (member["attr"], member["value"]) == ("environment", environment), member
        return
    weakened = " && ".join(c.cel() for c in ident.clauses if c != clause)
    edited = _weaken(setup, member["pool"], weakened)
    leaks = [name for name, row in TOKENS.items() if _reached(edited, idents, row[0]) != row[MODES[mode]]]
    assert leaks, f"{mode}: dropping {clause.cel()!r} from {environment}'s condition lets no token of TOKENS through: add one"


def test_the_old_repository_wide_binding_is_refused(setup):
    """The first setup: condition on the repository only, binding on attribute.repository."""
    old = f"assertion.repository == '{REPO}'"
    pr_claims = claims(environment="prod", **PR)
    assert ci_identity.condition_accepts(old, pr_claims), "sanity: the old condition let a PR through"
    assert ci_identity.pinned_claims(old).get("environment") is None
    assert not ci_identity.condition_accepts(setup.conditions["github-prod-deploy"], pr_claims)


# ------------------------------------------------------------------------------------- least privilege

NEVER = {"roles/owner", "roles/editor", "roles/iam.serviceAccountTokenCreator", "roles/iam.workloadIdentityUser",
         "roles/iam.serviceAccountAdmin", "roles/resourcemanager.projectIamAdmin", "roles/iam.securityAdmin",
         "roles/iam.serviceAccountUser"}
# What the deployer needs for each cloud type the platform stacks may register. Creating the node service
# account or granting its role needs IAM administration: that is ci/identities' job, never the deployer's.
REQUIRED_ROLE = {
    "gcp:container/cluster:Cluster": "roles/container.admin",
    "gcp:container/nodePool:NodePool": "roles/container.admin",
    "gcp:compute/firewall:Firewall": "roles/compute.securityAdmin",
    "gcp:compute/router:Router": "roles/compute.networkAdmin",
    "gcp:compute/routerNat:RouterNat": "roles/compute.networkAdmin",
    "gcp:serviceaccount/account:Account": "roles/iam.serviceAccountAdmin",
    "gcp:projects/iAMMember:IAMMember": "roles/resourcemanager.projectIamAdmin",
}


def privilege_problems(setup, stack):
    """Where `stack`'s CI identities hold more than they need, or hold it on more than the resource."""
    problems = []
    project, node = ci_identities.stack_facts(stack)
    for purpose, env in (("deployer", stack), ("preview", f"{stack}-preview")):
        sa = ci_identity.expected_identity(env)
        if sa not in setup.service_accounts:
            continue
        project_roles = setup.project_roles.get(sa, set())
        if project_roles & NEVER:
            problems.append(f"{sa}: project-level {sorted(project_roles & NEVER)}")
        if purpose == "preview" and not all(r.lower().endswith("viewer") for r in setup.roles.get(sa, set())):
            problems.append(f"{sa}: preview roles must be viewers: {sorted(setup.roles.get(sa, set()))}")
        buckets = {b for b, _ in setup.bucket_roles.get(sa, set())}
        if buckets != {ci_identities.state_bucket(stack)}:
            problems.append(f"{sa}: state access only on its own stack's bucket, got {sorted(buckets)}")
        acts_as = setup.account_roles.get(sa, set())
        want = {(node, "roles/iam.serviceAccountUser")} if purpose == "deployer" else set()
        if acts_as != want:
            problems.append(f"{sa}: roles on service accounts must be {sorted(want)}, got {sorted(acts_as)}")
    return problems


@pytest.mark.parametrize("stack", ci_identities.STACKS)
def test_ci_identities_hold_least_privilege_on_the_resource(setup, stack):
    assert privilege_problems(setup, stack) == []
    deployer = ci_identity.expected_identity(stack)
    assert {"roles/container.admin", "roles/storage.objectAdmin"} <= setup.roles[deployer]


@pytest.mark.parametrize("grant,expected", [
    (lambda s, sa: s.project_roles.setdefault(sa, set()).add("roles/iam.serviceAccountUser"), "project-level"),
    (lambda s, sa: s.project_roles.setdefault(sa, set()).add("roles/resourcemanager.projectIamAdmin"), "project-level"),
    (lambda s, sa: s.project_roles.setdefault(sa, set()).add("roles/iam.serviceAccountAdmin"), "project-level"),
    (lambda s, sa: s.bucket_roles.setdefault(sa, set()).add(("llm-platform-prod-pulumi-state", "roles/storage.objectAdmin")),
     "own stack's bucket"),
    (lambda s, sa: s.account_roles.setdefault(sa, set()).add(("x@llm-platform-dev.iam.gserviceaccount.com",
                                                              "roles/iam.serviceAccountUser")), "roles on service accounts"),
])
def test_privilege_check_refuses_the_old_grants(setup, grant, expected):
    """The old setup: serviceAccountUser on the project, the IAM admin roles for the stack to create the node account."""
    edited = copy.deepcopy(setup)
    grant(edited, ci_identity.expected_identity("dev"))
    assert any(expected in p for p in privilege_problems(edited, "dev")), privilege_problems(edited, "dev")


def deployer_gaps(types, roles):
    return sorted(f"{t} needs {REQUIRED_ROLE.get(t, 'an entry in REQUIRED_ROLE')}" for t in types
                  if REQUIRED_ROLE.get(t) not in roles)


@pytest.mark.parametrize("stack", ci_identities.STACKS)
def test_the_deployer_can_apply_everything_its_stack_registers(setup, program_run, stack):
    """With cluster.nodeServiceAccount set, the stack registers no IAM: the deployer's roles cover it all."""
    types = {r.type for r in program_run(stack) if r.type.startswith("gcp:")}
    assert deployer_gaps(types, setup.roles[ci_identity.expected_identity(stack)]) == []
    # The old stacks created the node account themselves: that needs the IAM admin roles.
    old = types | {"gcp:serviceaccount/account:Account", "gcp:projects/iAMMember:IAMMember"}
    assert len(deployer_gaps(old, setup.roles[ci_identity.expected_identity(stack)])) == 2


@pytest.mark.parametrize("stack", ci_identities.STACKS)
def test_every_node_runs_as_the_account_the_identities_create(setup, program_run, stack):
    """Pools and the cluster's temporary default pool run as cluster.nodeServiceAccount, which ci/identities
    creates with GKE's node role: the deployer needs actAs on that account only."""
    _, node = ci_identities.stack_facts(stack)
    assert node in setup.service_accounts
    assert setup.project_roles[node] == set(ci_identities.NODE_ROLES)
    records = program_run(stack)
    (cluster,) = [r for r in records if r.type == "gcp:container/cluster:Cluster"]
    assert cluster.inputs["nodeConfig"]["serviceAccount"] == node
    pools = [r for r in records if r.type == "gcp:container/nodePool:NodePool"]
    assert pools and all(p.inputs["nodeConfig"]["serviceAccount"] == node for p in pools)


# ------------------------------------------------------------------------------------------------ config

def _root_with(tmp_path, stack, edit):
    for s in ci_identities.STACKS:
        shutil.copy(ROOT / f"Pulumi.{s}.yaml", tmp_path / f"Pulumi.{s}.yaml")
    path = tmp_path / f"Pulumi.{stack}.yaml"
    doc = yaml_io.load(path.read_text())
    edit(doc["config"])
    path.write_text(yaml_io.dump(doc))
    return tmp_path


@pytest.mark.parametrize("config,stack_edit,expected", [
    ({"repository": "llm-platform"}, None, "`repository`"),
    ({**CONFIG, "prodApproval": "nobody"}, None, "`prodApproval`"),
    ({**CONFIG, "prodApproval": "maintainers"}, None, "`maintainers` is empty"),
    ({**CONFIG, "prodApproval": "maintainers", "maintainers": ["octocat"]}, None, "numeric GitHub user ids"),
    (CONFIG, lambda c: c["llm-platform:cluster"].pop("nodeServiceAccount"), "nodeServiceAccount` is missing"),
    (CONFIG, lambda c: c["llm-platform:cluster"].update(nodeServiceAccount="n@other.iam.gserviceaccount.com"),
     "of the stack's project"),
])
def test_bad_config_is_one_clear_error_and_registers_nothing(tmp_path, config, stack_edit, expected):
    root = _root_with(tmp_path, "prod", stack_edit) if stack_edit else ROOT
    with pytest.raises(ci_identities.ConfigError, match=re.escape(expected)):
        ci_identities.load_settings(config, root)
    # The settings are loaded before the first resource: a bad config registers nothing.
    errors = []
    assert ci_identity.run_identities(config, root, errors=errors) == [] and len(errors) == 1


def test_the_program_runs_from_its_entry_point_with_the_committed_config(setup):
    """ci/identities/__main__.py reads Pulumi.main.yaml's keys through pulumi.Config and registers the same."""
    direct = setup.records
    via_main = ci_identity.run_identities(entry_point=True)
    assert sorted((r.type, r.name) for r in via_main) == sorted((r.type, r.name) for r in direct)
    maintainers = ci_identity.run_identities(MAINTAINERS_CONFIG, entry_point=True)
    conditions = [r.inputs["attributeCondition"] for r in maintainers if r.type.endswith("WorkloadIdentityPoolProvider")]
    assert any(f"assertion.actor_id in ['{MAINTAINER}'] && assertion.run_attempt == '1'" in c for c in conditions), conditions


# -------------------------------------------------------------------------------------- docs and GitHub

def test_docs_environment_table_points_each_environment_at_its_own_pool(setup):
    text = (ROOT / "docs" / "ci.md").read_text()
    section = text[text.index("### GitHub settings"):]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z-]+)` \|.*$", section, re.M)
            if m.group(1) in ("dev", "prod", "dev-preview", "prod-preview")}
    assert set(rows) == {"dev", "prod", "dev-preview", "prod-preview"}, f"docs/ci.md environment rows: {sorted(rows)}"
    for environment, row in rows.items():
        pool = binding_for(ci_identity.expected_identity(environment), setup)["pool"]
        assert f"pool `{pool}`" in row, f"{environment}: provider must be in pool {pool}"
        stack = environment.split("-")[0]
        assert f"gs://{ci_identities.state_bucket(stack)}" in row, f"{environment}: its own stack's state bucket"
        if environment in ("prod", "prod-preview"):
            assert "required reviewers" in row, f"{environment} needs required reviewers"
        if environment in ("dev", "prod"):
            assert "`main` only" in row, f"{environment}: deployment branches main only"
    assert "no repository-level secrets" in text


def test_the_conditions_live_only_in_the_code():
    """No second copy of the trust rules to drift: README.md and docs/ carry no gcloud setup."""
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = path.read_text()
        assert "--attribute-condition" not in text and "add-iam-policy-binding" not in text, \
            f"{path.relative_to(ROOT)}: the identity setup is ci/identities (tools/ci_identities.py)"


# ------------------------------------------------------------------------- Kubernetes side of previews

def manifests(stack):
    return [d for d in yaml_io.load_all((ROOT / "k8s" / "ci" / f"preview-{stack}.yaml").read_text()) if d]


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


def test_workflow_identities_are_the_federated_identities(setup):
    """The service account each workflow job uses is the one ci/identities federates for that environment."""
    for wf in ("pr.yaml", "deploy.yaml"):
        doc = yaml_io.load((ROOT / ".github" / "workflows" / wf).read_text())
        for job in ci_identity.credentialed_jobs(doc, wf):
            member = binding_for(job.service_account, setup)
            assert member["value"] == job.environment, \
                f"{wf} job {job.job} {job.matrix}: {job.service_account} is federated for {member['value']}, runs in {job.environment}"
