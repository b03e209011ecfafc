"""Reads the CI trust rules from where they live: the workflows and the README's setup commands.

- `credentialed_jobs(doc)`: every (job, matrix cell) that authenticates to Google, with the environment and
  the service account it resolves to (matrix and `env` expressions expanded as Actions would).
- `workflow_problems(doc)`: the issue's rules for workflows, as a list of messages (empty = fine).
- `readme_setup(text)`: the `gcloud` commands of README "CI identities", with shell variables expanded:
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
import pathlib
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")
AUTH_ACTION = "google-github-actions/auth"
_EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


@functools.cache
def project_of(stack: str) -> str:
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
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
    text = yaml.safe_dump(value) if not isinstance(value, str) else value
    return set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", text))


def workflow_problems(doc: dict, workflow: str) -> list[str]:
    """Every way this workflow breaks the CI identity rules (README "CI identities")."""
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


# ------------------------------------------------------------------------------------------------ README

@dataclass
class Setup:
    variables: dict[str, str]
    commands: list[list[str]]
    service_accounts: set[str] = field(default_factory=set)
    roles: dict[str, set[str]] = field(default_factory=dict)        # member SA -> roles (project and bucket)
    conditions: dict[str, str] = field(default_factory=dict)        # pool -> provider attribute condition
    mappings: dict[str, str] = field(default_factory=dict)          # pool -> attribute mapping
    wif_bindings: list[tuple[str, str]] = field(default_factory=list)  # (service account, member)


def readme_section(text: str, title: str = "### CI identities") -> str:
    start = text.index(title)
    nxt = re.search(r"^##+ ", text[start + len(title):], re.M)
    return text[start: start + len(title) + nxt.start()] if nxt else text[start:]


def _expand_shell(word: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), word)


def readme_setup(text: str) -> Setup:
    section = readme_section(text)
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    variables: dict[str, str] = {}
    commands: list[list[str]] = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            substitution = re.fullmatch(r"(\w+)=\$\(.*\)", line)
            if substitution:  # VAR=$(gcloud projects describe ...): a placeholder named after the variable
                variables[substitution.group(1)] = f"<{substitution.group(1)}>"
                continue
            words = shlex.split(line, comments=True)
            if len(words) == 1 and re.fullmatch(r"\w+=.*", words[0]):
                key, _, value = words[0].partition("=")
                variables[key] = _expand_shell(value, variables)
                continue
            commands.append([_expand_shell(w, variables) for w in words])
    setup = Setup(variables, commands)

    def flag(cmd: list[str], name: str) -> Optional[str]:
        for i, w in enumerate(cmd):
            if w == name and i + 1 < len(cmd):
                return cmd[i + 1]
            if w.startswith(name + "="):
                return w.split("=", 1)[1]
        return None

    for cmd in commands:
        if cmd[:1] != ["gcloud"]:
            continue
        verb = " ".join(w for w in cmd[1:6] if not w.startswith("-"))
        if verb.startswith("iam service-accounts create "):
            project = flag(cmd, "--project")
            setup.service_accounts.add(f"{cmd[4]}@{project}.iam.gserviceaccount.com")
        elif verb.startswith(("projects add-iam-policy-binding", "storage buckets add-iam-policy-binding")):
            member = flag(cmd, "--member") or ""
            if member.startswith("serviceAccount:"):
                setup.roles.setdefault(member.split(":", 1)[1], set()).add(flag(cmd, "--role"))
        elif verb.startswith("iam workload-identity-pools providers create-oidc"):
            pool = flag(cmd, "--workload-identity-pool")
            setup.conditions[pool] = flag(cmd, "--attribute-condition") or ""
            setup.mappings[pool] = flag(cmd, "--attribute-mapping") or ""
        elif verb.startswith("iam service-accounts add-iam-policy-binding"):
            if flag(cmd, "--role") == "roles/iam.workloadIdentityUser":
                sa = next(w for w in cmd[4:] if not w.startswith("-"))
                setup.wif_bindings.append((sa, flag(cmd, "--member") or ""))
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
