"""Reads the CI trust rules from where they live: the workflows and the identities code (tools/ci_identities.py).

- `credentialed_jobs(doc)`: every (job, matrix cell) that authenticates to Google, with the environment and
  the service account it resolves to (matrix and `env` expressions expanded as Actions would).
- `workflow_problems(doc)`: the issue's rules for workflows, as a list of messages (empty = fine).
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
        if is_deployer and set(on) != {"push"}:
            problems.append(f"{where}: a deployer identity is used by a workflow triggered on {sorted(on)}")
        if is_deployer and (on.get("push") or {}).get("branches") != ["main"]:
            problems.append(f"{where}: a deployer identity outside push to main")
        if not is_deployer and "pull_request" in on:
            cond = str(cj.job_def.get("if", ""))
            if "github.event.pull_request.head.repo.full_name == github.repository" not in cond:
                problems.append(f"{where}: a credentialed PR job must be skipped for fork PRs")
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
