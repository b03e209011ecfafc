"""Reads the CI trust rules from where they live: the workflows and the identities code (tools/ci_identities.py).

- `credentialed_jobs(doc)`: every (job, matrix cell) that authenticates to Google, with the environment and
  the service account it resolves to (matrix and `env` expressions expanded as Actions would).
- `workflow_problems(doc)`: the rules for workflows, as a list of messages (empty = fine); the rules on which
  runs start a credentialed job are checked over `simulated_runs()` (push, dispatch, re-run, PR, fork PR, each
  under every value of the mode variable `PROD_APPROVAL`).
- `job_results(doc, run)` / `run_tokens(doc, workflow, run)`: which jobs a `Run` starts (each `if` evaluated
  by `evaluate`, a GitHub expression evaluator with Actions' loose equality and status functions) and the OIDC
  claims each started credentialed job's token carries.
- `run_identities(config)` / `setup_from(records)`: what the ci/identities program registers under Pulumi mocks:
  service accounts, role bindings, pools/providers (attribute conditions) and workloadIdentityUser bindings.
- `condition_accepts(condition, claims)`: evaluates a provider's attribute condition with cel-expr-python
  (Google's attribute conditions are CEL over `assertion`); an evaluation error counts as a refusal, as in
  Security Token Service.

The identity naming rule every check reads: environment `<stack>` -> `pulumi-<stack>-deployer`,
`<stack>-preview` -> `pulumi-<stack>-preview`, in the project `gcp:project` of Pulumi.<stack>.yaml.
"""

from __future__ import annotations

import functools
import itertools
import json
import pathlib
import re
import runpy
from dataclasses import dataclass, field
from typing import Any, Optional

from components import yaml_io
from tools import mockrun

ROOT = pathlib.Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")
AUTH_ACTION = "google-github-actions/auth"
_EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


@functools.cache
def project_of(stack: str) -> str:
    doc = yaml_io.load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return doc["config"]["gcp:project"]


def expected_identity(environment: str) -> Optional[str]:
    """The only service account a job in `environment` may use (None: the environment gets no identity)."""
    stack, _, purpose = environment.partition("-")
    if stack not in STACKS or purpose not in ("", "preview"):
        return None
    role = "preview" if purpose else "deployer"
    return f"pulumi-{stack}-{role}@{project_of(stack)}.iam.gserviceaccount.com"


def triggers(doc: dict) -> dict:
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {t: None for t in on}
    return on or {}


def _matrix_cells(job: dict) -> list[dict]:
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    include = matrix.get("include") or []
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    cells = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())] if axes else []
    if not cells:
        return [dict(c) for c in include] or [{}]
    for extra in include:  # include entries extend the cells they match
        for cell in cells:
            if all(cell.get(k) == v for k, v in extra.items() if k in axes):
                cell.update(extra)
    return cells


def expand(value: Any, matrix: dict, env: dict) -> Any:
    """Expand `${{ matrix.x }}` / `${{ env.X }}` the way Actions would; anything else stays as written."""
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        expr = m.group(1)
        if expr.startswith("matrix.") and expr[7:] in matrix:
            return str(matrix[expr[7:]])
        if expr.startswith("env.") and expr[4:] in env:
            return str(expand(env[expr[4:]], matrix, env))
        return m.group(0)

    return _EXPR.sub(one, value)


@dataclass
class CredentialedJob:
    workflow: str
    job: str
    matrix: dict
    environment: Optional[str]
    service_account: str
    provider: str
    job_def: dict = field(repr=False, default_factory=dict)


def credentialed_jobs(doc: dict, workflow: str = "") -> list[CredentialedJob]:
    found = []
    for name, job in (doc.get("jobs") or {}).items():
        auths = [s for s in job.get("steps", []) if str(s.get("uses", "")).split("@")[0] == AUTH_ACTION]
        for cell in _matrix_cells(job):
            env = {k: expand(v, cell, {}) for k, v in (job.get("env") or {}).items()}
            environment = job.get("environment")
            if isinstance(environment, dict):
                environment = environment.get("name")
            environment = expand(environment, cell, env) if environment else None
            for auth in auths:
                w = auth.get("with") or {}
                found.append(CredentialedJob(workflow, name, cell, environment,
                                             expand(w.get("service_account", ""), cell, env),
                                             expand(w.get("workload_identity_provider", ""), cell, env), job))
    return found


def _secret_refs(value: Any) -> set[str]:
    text = yaml_io.dump(value) if not isinstance(value, str) else value
    return set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", text))


def workflow_problems(doc: dict, workflow: str) -> list[str]:
    """Every way this workflow breaks the CI identity rules (docs/ci.md "CI identities")."""
    problems = []
    on = triggers(doc)
    if "pull_request_target" in on:
        problems.append(f"{workflow}: triggers on pull_request_target (runs PR code with the base repo's secrets)")
    top = doc.get("permissions") or {}
    if isinstance(top, dict) and top.get("id-token") == "write":
        problems.append(f"{workflow}: id-token: write at workflow level; grant it only to the jobs that authenticate")
    for cj in credentialed_jobs(doc, workflow):
        where = f"{workflow}: job {cj.job} {cj.matrix or ''}".rstrip()
        if not cj.environment:
            problems.append(f"{where}: gets Google credentials but declares no environment")
            continue
        want = expected_identity(cj.environment)
        if want is None:
            problems.append(f"{where}: environment {cj.environment!r} has no CI identity")
        elif cj.service_account != want:
            problems.append(f"{where}: environment {cj.environment} must use {want}, not {cj.service_account!r}")
        if "vars.GCP_WORKLOAD_IDENTITY_PROVIDER" not in cj.provider:
            problems.append(f"{where}: the provider must be the environment's variable GCP_WORKLOAD_IDENTITY_PROVIDER")
        is_deployer = want is not None and want.split("@")[0].endswith("-deployer")
        if is_deployer and not set(on) <= DEPLOY_TRIGGERS:
            problems.append(f"{where}: a deployer identity is used by a workflow triggered on {sorted(on)}")
        if is_deployer and (on.get("push") or {}).get("branches") != ["main"]:
            problems.append(f"{where}: a deployer identity outside push to main")
        if is_deployer and (on.get("workflow_dispatch") or {}).get("inputs"):
            problems.append(f"{where}: workflow_dispatch inputs would let the dispatcher steer a deployer")
        if not is_deployer and "pull_request" in on:
            cond = str(cj.job_def.get("if", ""))
            if "github.event.pull_request.head.repo.full_name == github.repository" not in cond:
                problems.append(f"{where}: a credentialed PR job must be skipped for fork PRs")
    problems += _run_problems(doc, workflow)
    for name, job in (doc.get("jobs") or {}).items():
        refs = _secret_refs(job) - {"GITHUB_TOKEN"}
        if refs and not job.get("environment"):
            problems.append(f"{workflow}: job {name} reads secrets {sorted(refs)} without an environment: "
                            "they would be repository-level secrets, visible to every job")
        perms = job.get("permissions")
        has_auth = any(str(s.get("uses", "")).split("@")[0] == AUTH_ACTION for s in job.get("steps", []))
        if isinstance(perms, dict) and perms.get("id-token") == "write" and not has_auth:
            problems.append(f"{workflow}: job {name} asks for id-token: write but never authenticates")
    return problems


DEPLOY_TRIGGERS = {"push", "workflow_dispatch"}


def _run_problems(doc: dict, workflow: str) -> list[str]:
    """The rules on which runs start a credentialed job, checked by simulating every run of `simulated_runs()`
    under every value of the mode variable (docs/ci.md "Without required reviewers")."""
    problems = set()
    for label, run in simulated_runs():
        mode = dict(run.variables).get(_mode_variable(), "")
        for cj, claims in run_tokens(doc, workflow, run, SIMULATED_REPOSITORY):
            where = f"{workflow}: job {cj.job} {cj.matrix or ''}".rstrip()
            want = expected_identity(cj.environment or "") or ""
            stack = (cj.environment or "").partition("-")[0]
            if want.split("@")[0].endswith("-deployer"):
                if (run.event_name, run.ref) not in {(e, "refs/heads/main") for e in DEPLOY_TRIGGERS}:
                    problems.add(f"{where}: a deployer runs on {label}")
                if mode == "maintainers" and stack == "prod" and run.event_name != "workflow_dispatch":
                    problems.add(f"{where}: maintainers mode deploys prod on {label}, not only on a maintainer's dispatch")
                if mode == "maintainers" and stack == "prod" and claims["run_attempt"] != "1":
                    problems.add(f"{where}: maintainers mode deploys prod on a re-run ({label}): it would replay an "
                                 "old commit under the first run's actor")
                if mode != "maintainers" and stack == "prod" and run.event_name != "push":
                    problems.add(f"{where}: reviewers mode deploys prod on {label}")
            if mode == "maintainers" and stack == "prod" and run.event_name.startswith("pull_request"):
                problems.add(f"{where}: requests prod credentials in a pull request run ({label}): without "
                             "reviewers no prod-preview identity exists and nobody reads the PR first")
    return sorted(problems)


SIMULATED_REPOSITORY = "owner/repo"


def _mode_variable() -> str:
    from tools import ci_identities

    return ci_identities.PROD_APPROVAL_VARIABLE


def simulated_runs(actor_id: str = "1") -> list[tuple[str, Run]]:
    """The runs the workflow rules check: each event and ref that matters, a re-run, under each value of the
    mode variable (unset, each `prodApproval`, and a typo)."""
    from typing import get_args

    from tools import ci_identities

    out = []
    for value in ("", *get_args(ci_identities.ProdApproval), "maintainer"):
        v = ((_mode_variable(), value),) if value else ()
        tag = f"{_mode_variable()}={value or 'unset'}"
        pr = dict(ref="refs/pull/7/merge", ref_protected="false", base_ref="main")
        for label, run in (
            ("push to main", Run("push", "refs/heads/main", actor_id, v)),
            ("push to a branch", Run("push", "refs/heads/feature", actor_id, v, ref_protected="false")),
            ("re-run of a push to main", Run("push", "refs/heads/main", actor_id, v, run_attempt="2")),
            ("dispatch on main", Run("workflow_dispatch", "refs/heads/main", actor_id, v)),
            ("dispatch on a branch", Run("workflow_dispatch", "refs/heads/feature", actor_id, v, ref_protected="false")),
            ("dispatch on a protected branch", Run("workflow_dispatch", "refs/heads/release", actor_id, v)),
            ("dispatch on a tag", Run("workflow_dispatch", "refs/tags/v1", actor_id, v)),
            ("re-run of a dispatch on main", Run("workflow_dispatch", "refs/heads/main", actor_id, v, run_attempt="2")),
            ("pull request", Run("pull_request", actor_id=actor_id, variables=v, **pr)),
            ("pull request re-run", Run("pull_request", actor_id=actor_id, variables=v, run_attempt="2", **pr)),
            ("fork pull request", Run("pull_request", actor_id=actor_id, variables=v,
                                      head_repository="someone/repo", **pr)),
        ):
            out.append((f"{label} ({tag})", run))
    return out


# ------------------------------------------------------------------------------------- the identities code

@dataclass
class Setup:
    """What ci/identities registers, in the terms the checks read."""

    records: list = field(default_factory=list)
    service_accounts: set[str] = field(default_factory=set)
    roles: dict[str, set[str]] = field(default_factory=dict)        # member SA -> roles (project and bucket)
    project_roles: dict[str, set[str]] = field(default_factory=dict)  # member SA -> roles granted on a project
    bucket_roles: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # member SA -> {(bucket, role)}
    account_roles: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # member -> {(account, role)}
    conditions: dict[str, str] = field(default_factory=dict)        # pool -> provider attribute condition
    mappings: dict[str, str] = field(default_factory=dict)          # pool -> attribute mapping
    wif_bindings: list[tuple[str, str]] = field(default_factory=list)  # (service account, member)


PROJECT_NUMBER = "123456789012"


class _IdentityMocks(mockrun.Mocks):
    """The shared mocks, plus the outputs GCP computes that the identities program reads."""

    def new_resource(self, args):
        rid, state = super().new_resource(args)
        state = dict(state)
        if args.typ == "gcp:serviceaccount/account:Account":
            email = f"{args.inputs['accountId']}@{args.inputs['project']}.iam.gserviceaccount.com"
            state.update(email=email, member=f"serviceAccount:{email}",
                         name=f"projects/{args.inputs['project']}/serviceAccounts/{email}")
        elif args.typ == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
            state["name"] = (f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                             f"{args.inputs['workloadIdentityPoolId']}")
        elif args.typ == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
            state["name"] = (f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                             f"{args.inputs['workloadIdentityPoolId']}/providers/{args.inputs['workloadIdentityPoolProviderId']}")
        return rid, state


def run_identities(config: Optional[dict] = None, root: pathlib.Path = ROOT, errors: Optional[list] = None,
                   entry_point: bool = False) -> list:
    """Run the ci/identities program under mocks with `config` (default: ci/identities/Pulumi.main.yaml) and
    return what it registered. With `errors`, a ConfigError is appended there instead of raised."""
    import pulumi

    from tools import ci_identities

    raw = config if config is not None else identities_config()
    mocks = _IdentityMocks()
    monitor = mockrun._RecordingMonitor(mocks)
    mockrun._fresh_engine()
    pulumi.runtime.set_mocks(mocks, project="llm-platform-ci-identities", stack="main", monitor=monitor)

    @pulumi.runtime.test
    def program():
        if entry_point:  # as `pulumi up` runs it: ci/identities/__main__.py reading the stack's config
            pulumi.runtime.set_all_config({f"llm-platform-ci-identities:{k}": v if isinstance(v, str) else json.dumps(v)
                                           for k, v in raw.items()})
            runpy.run_path(str(ROOT / "ci" / "identities" / "__main__.py"), run_name="__main__")
        else:
            ci_identities.program(ci_identities.load_settings(raw, root))

    try:
        program()
    except ci_identities.ConfigError as err:
        if errors is None:
            raise
        errors.append(err)
    return list(monitor.records)


def identities_config() -> dict:
    """The committed config of ci/identities (Pulumi.main.yaml), keys without the project prefix."""
    doc = yaml_io.load((ROOT / "ci" / "identities" / "Pulumi.main.yaml").read_text())
    return {k.split(":", 1)[1]: v for k, v in (doc.get("config") or {}).items()}


def setup_from(records: list) -> Setup:
    setup = Setup(records=records)
    accounts = {r.urn: f"{r.inputs['accountId']}@{r.inputs['project']}.iam.gserviceaccount.com"
                for r in records if r.type == "gcp:serviceaccount/account:Account"}
    buckets = {r.inputs["name"] for r in records if r.type == "gcp:storage/bucket:Bucket"}
    for r in records:
        member = str(r.inputs.get("member", ""))
        sa = member.split(":", 1)[1] if member.startswith("serviceAccount:") else None
        if r.type == "gcp:serviceaccount/account:Account":
            setup.service_accounts.add(accounts[r.urn])
        elif r.type == "gcp:projects/iAMMember:IAMMember" and sa:
            setup.roles.setdefault(sa, set()).add(r.inputs["role"])
            setup.project_roles.setdefault(sa, set()).add(r.inputs["role"])
        elif r.type == "gcp:storage/bucketIAMMember:BucketIAMMember" and sa:
            assert r.inputs["bucket"] in buckets, r.inputs
            setup.roles.setdefault(sa, set()).add(r.inputs["role"])
            setup.bucket_roles.setdefault(sa, set()).add((r.inputs["bucket"], r.inputs["role"]))
        elif r.type == "gcp:serviceaccount/iAMMember:IAMMember":
            target = r.inputs["serviceAccountId"].rsplit("/", 1)[-1]
            if r.inputs["role"] == "roles/iam.workloadIdentityUser":
                setup.wif_bindings.append((target, member))
            else:
                setup.account_roles.setdefault(sa or member, set()).add((target, r.inputs["role"]))
        elif r.type == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
            pool = r.inputs["workloadIdentityPoolId"]
            setup.conditions[pool] = r.inputs.get("attributeCondition", "")
            setup.mappings[pool] = ",".join(f"{k}={v}" for k, v in r.inputs.get("attributeMapping", {}).items())
    return setup


_PRINCIPAL_SET = re.compile(
    r"^principalSet://iam\.googleapis\.com/projects/(?P<project>[^/]+)/locations/global/"
    r"workloadIdentityPools/(?P<pool>[^/]+)/(?:attribute\.(?P<attr>\w+)/(?P<value>.+)|\*)$")


def parse_member(member: str) -> Optional[dict]:
    m = _PRINCIPAL_SET.match(member)
    return m.groupdict() if m else None


def pinned_claims(condition: str) -> dict[str, str]:
    """`assertion.x == 'v'` conjuncts of a condition (only when the whole condition is a conjunction)."""
    if "||" in condition or "!" in condition.replace("!=", ""):
        return {}
    return dict(re.findall(r"assertion\.(\w+)\s*==\s*'([^']*)'", condition))


def mapped_attributes(mapping: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in mapping.split(",") if "=" in pair)


@functools.cache
def _compiled(condition: str) -> Any:
    from cel_expr_python import cel

    return cel.NewEnv(variables={"assertion": cel.Type.DYN}).compile(condition)


def condition_accepts(condition: str, claims: dict) -> bool:
    from cel_expr_python import cel

    value = _compiled(condition).eval(data={"assertion": claims})
    return value.type() == cel.Type.BOOL and value.plain_value() is True


# ------------------------------------------------------------------------------ workflow runs, simulated

class ExpressionError(ValueError):
    """An expression the evaluator does not understand: a test failure, never a silent `false`."""


_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[!<>().,\[\]])"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))")


def _tokens(expr: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {expr[pos:]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group(kind)
        out.append((kind, float(text) if kind == "num" else text[1:-1].replace("''", "'") if kind == "str" else text))
    return out


def _number(v: Any) -> float:
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip()) if v.strip() else 0.0
        except ValueError:
            return float("nan")
    return float("nan")


def _equal(a: Any, b: Any) -> bool:
    """GitHub's loose equality: strings ignore case; different types compare as numbers."""
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if type(a) is type(b):
        return bool(a == b)
    return _number(a) == _number(b)


def _truthy(v: Any) -> bool:
    return v not in (None, False, 0, "") and not (isinstance(v, float) and v != v)


class _Parser:
    """GitHub Actions expressions (docs: "Evaluate expressions in workflows and actions"): literals, contexts,
    `!`, comparisons, `&&`/`||` (returning an operand, as Actions does), and the status functions."""

    def __init__(self, expr: str, ctx: dict, status: dict):
        self.toks, self.i, self.ctx, self.status, self.expr = _tokens(expr), 0, ctx, status, expr

    def peek(self) -> Optional[str]:
        return self.toks[self.i][1] if self.i < len(self.toks) and self.toks[self.i][0] == "op" else None

    def take(self, op: str) -> None:
        if self.peek() != op:
            raise ExpressionError(f"expected {op!r} in {self.expr!r}")
        self.i += 1

    def parse(self) -> Any:
        value = self.or_()
        if self.i != len(self.toks):
            raise ExpressionError(f"trailing tokens in {self.expr!r}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.i += 1
            right = self.and_()
            value = value if _truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.cmp()
        while self.peek() == "&&":
            self.i += 1
            right = self.cmp()
            value = right if _truthy(value) else value
        return value

    def cmp(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self.peek()
            self.i += 1
            right = self.unary()
            if op in ("==", "!="):
                value = _equal(value, right) == (op == "==")
            else:
                a, b = _number(value), _number(right)
                value = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.i += 1
            return not _truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        if self.i >= len(self.toks):
            raise ExpressionError(f"unexpected end of {self.expr!r}")
        kind, text = self.toks[self.i]
        self.i += 1
        if kind == "op" and text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind in ("num", "str"):
            return text
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r} in {self.expr!r}")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if self.peek() == "(":
            self.take("(")
            self.take(")")
            if text not in self.status:
                raise ExpressionError(f"function {text}() is not simulated ({self.expr!r})")
            return self.status[text]
        value: Any = self.ctx.get(text)
        while self.peek() in (".", "["):
            if self.peek() == ".":
                self.i += 1
                _, key = self.toks[self.i]
                self.i += 1
            else:
                self.i += 1
                key = self.or_()
                self.take("]")
            value = value.get(key) if isinstance(value, dict) else None
        return value


def evaluate(expr: str, ctx: dict, status: Optional[dict] = None) -> Any:
    """Evaluate an expression (with or without `${{ }}`) over contexts `ctx` ({"github": ..., "vars": ...})."""
    text = expr.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    return _Parser(text, ctx, status or {}).parse()


_STATUS_FUNCTIONS = re.compile(r"\b(success|always|failure|cancelled)\s*\(")


@dataclass(frozen=True)
class Run:
    """A GitHub workflow run as the job conditions and the OIDC token see it."""

    event_name: str
    ref: str
    actor_id: str
    variables: tuple[tuple[str, str], ...] = ()   # repository variables (vars.*)
    run_attempt: str = "1"
    ref_protected: str = "true"
    base_ref: str = ""          # pull_request: the branch the PR targets
    head_repository: str = ""   # pull_request: the repository of the PR's branch (a fork's own name)

    def contexts(self, repository: str) -> dict:
        github: dict[str, Any] = {"event_name": self.event_name, "ref": self.ref, "repository": repository,
                                  "actor_id": self.actor_id, "run_attempt": self.run_attempt,
                                  "base_ref": self.base_ref, "event": {}}
        if self.event_name in ("pull_request", "pull_request_target"):
            github["event"] = {"pull_request": {"head": {"repo": {"full_name": self.head_repository or repository}},
                                                "base": {"ref": self.base_ref}}}
        return {"github": github, "vars": dict(self.variables)}


def _branch_matches(patterns: list, branch: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(branch, str(p)) for p in patterns)


def triggered(doc: dict, run: Run) -> bool:
    """Does `run`'s event start this workflow (its `on:` filters)?"""
    on = triggers(doc)
    if run.event_name not in on:
        return False
    spec = on[run.event_name] or {}
    if run.event_name == "push":
        return not spec.get("branches") or _branch_matches(spec["branches"], run.ref.removeprefix("refs/heads/"))
    if run.event_name in ("pull_request", "pull_request_target"):
        return not spec.get("branches") or _branch_matches(spec["branches"], run.base_ref)
    return True


def job_results(doc: dict, run: Run, repository: str, outcomes: Optional[dict] = None) -> dict[str, str]:
    """job -> success / failure / skipped for `run`: each job's `if` evaluated as Actions does (an `if` without a
    status function means `success() && (if)`), needs first. A job that runs succeeds unless `outcomes` says."""
    jobs = doc.get("jobs") or {}
    if not triggered(doc, run):
        return {name: "skipped" for name in jobs}
    results: dict[str, str] = {}

    def result(name: str, seen: tuple = ()) -> str:
        if name in results:
            return results[name]
        if name in seen:
            raise ExpressionError(f"needs cycle at {name}")
        job = jobs[name]
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else list(needs)
        need_results = {n: result(n, (*seen, name)) for n in needs}
        status = {"success": all(r == "success" for r in need_results.values()),
                  "failure": any(r == "failure" for r in need_results.values()),
                  "always": True, "cancelled": False}
        cond = str(job.get("if", "")).strip()
        ctx = {**run.contexts(repository), "needs": {n: {"result": r, "outputs": {}} for n, r in need_results.items()}}
        if not cond:
            runs_ = status["success"]
        elif _STATUS_FUNCTIONS.search(cond):
            runs_ = _truthy(evaluate(cond, ctx, status))
        else:
            runs_ = status["success"] and _truthy(evaluate(cond, ctx, status))
        results[name] = (outcomes or {}).get(name, "success") if runs_ else "skipped"
        return results[name]

    for name in jobs:
        result(name)
    return results


def run_tokens(doc: dict, workflow: str, run: Run, repository: str,
               outcomes: Optional[dict] = None) -> list[tuple[CredentialedJob, dict]]:
    """Every credentialed job (matrix cell) that `run` starts, with the OIDC claims its token carries."""
    results = job_results(doc, run, repository, outcomes)
    found = []
    for cj in credentialed_jobs(doc, workflow):
        if results.get(cj.job) == "skipped":
            continue
        repo = repository  # the run's repository, a fork PR's included (its own name is only in the event)
        claims = {"repository": repo, "repository_owner": repo.split("/")[0], "ref": run.ref,
                  "ref_protected": run.ref_protected, "event_name": run.event_name, "actor_id": run.actor_id,
                  "run_attempt": run.run_attempt, "job_workflow_ref": f"{repo}/.github/workflows/{workflow}@{run.ref}",
                  "sub": f"repo:{repo}:environment:{cj.environment}" if cj.environment else f"repo:{repo}:ref:{run.ref}"}
        if cj.environment:
            claims["environment"] = cj.environment
        if run.base_ref:
            claims["base_ref"] = run.base_ref
        found.append((cj, claims))
    return found
