"""The CI identities as code: who may deploy or preview which stack, from which GitHub runs.

``ci/identities`` is a Pulumi program of its own that a project owner applies once per change (docs/ci.md,
"CI identities"). It creates, per stack: the state bucket, the deployer and preview service accounts with
their roles (on the resource wherever GCP allows it), the GKE node service account the stack's
``cluster.nodeServiceAccount`` names, and one Workload Identity pool per identity whose provider condition is
that identity's trust rule. The platform stacks then need no IAM administration at all.

The trust rules are data (:class:`Clause`), so the tests drop each clause in turn and prove a token
gets through; nothing here reads the cloud, and the stack files are the one source of the projects and of
the node service account.
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

from components import yaml_io
from components.cluster import NODE_ROLES, node_account_id

ROOT = pathlib.Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")
ISSUER = "https://token.actions.githubusercontent.com"
PROVIDER_ID = "github"
MAIN = "refs/heads/main"
DEPLOY_WORKFLOW = ".github/workflows/deploy.yaml"
PR_WORKFLOW = ".github/workflows/pr.yaml"

# Claims STS copies onto the federated principal; the bindings read attribute.environment.
ATTRIBUTE_MAPPING = {
    "google.subject": "assertion.sub",
    "attribute.repository": "assertion.repository",
    "attribute.environment": "assertion.environment",
    "attribute.ref": "assertion.ref",
    "attribute.event_name": "assertion.event_name",
    "attribute.job_workflow_ref": "assertion.job_workflow_ref",
}

# Deployer: what the stacks register (cluster and node pools, the webhook firewall, Cloud Router + NAT),
# nothing that administers IAM. Preview: read-only. Both on their own project only.
DEPLOYER_PROJECT_ROLES = ("roles/container.admin", "roles/compute.networkAdmin", "roles/compute.securityAdmin")
PREVIEW_PROJECT_ROLES = ("roles/container.clusterViewer", "roles/compute.networkViewer")
# On the stack's state bucket, never the project.
DEPLOYER_BUCKET_ROLE = "roles/storage.objectAdmin"
PREVIEW_BUCKET_ROLE = "roles/storage.objectViewer"
# On the node service account, never the project: creating node pools that run as it needs actAs on it.
NODE_ACCOUNT_USER_ROLE = "roles/iam.serviceAccountUser"
WORKLOAD_IDENTITY_USER_ROLE = "roles/iam.workloadIdentityUser"

ProdApproval = Literal["reviewers", "maintainers"]
# The repository variable that tells the workflows which `prodApproval` the identities enforce (docs/ci.md).
PROD_APPROVAL_VARIABLE = "PROD_APPROVAL"


class ConfigError(ValueError):
    """Bad identities config: names the key and the fix."""


def state_bucket(stack: str) -> str:
    return f"llm-platform-{stack}-pulumi-state"


def sa_email(account_id: str, project: str) -> str:
    return f"{account_id}@{project}.iam.gserviceaccount.com"


@dataclass(frozen=True)
class Clause:
    """One conjunct of a provider's attribute condition: ``assertion.<claim> <op> <value>``."""

    claim: str
    op: Literal["==", "startsWith", "in"]
    value: Any

    def cel(self) -> str:
        if self.op == "==":
            return f"assertion.{self.claim} == {_quote(self.value)}"
        if self.op == "startsWith":
            return f"assertion.{self.claim}.startsWith({_quote(self.value)})"
        return f"assertion.{self.claim} in [{', '.join(_quote(v) for v in self.value)}]"


def _quote(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ConfigError(f"{value!r}: quotes and backslashes have no place in a GitHub claim value")
    return f"'{value}'"


@dataclass(frozen=True)
class Identity:
    """A CI identity: one GitHub environment, one service account, one pool."""

    stack: str
    purpose: Literal["deployer", "preview"]
    project: str
    clauses: tuple[Clause, ...]

    @property
    def environment(self) -> str:
        return self.stack if self.purpose == "deployer" else f"{self.stack}-preview"

    @property
    def account_id(self) -> str:
        return f"pulumi-{self.stack}-{self.purpose}"

    @property
    def email(self) -> str:
        return sa_email(self.account_id, self.project)

    @property
    def pool_id(self) -> str:
        return f"github-{self.stack}-{'deploy' if self.purpose == 'deployer' else 'preview'}"

    @property
    def condition(self) -> str:
        return " && ".join(c.cel() for c in self.clauses)

    @property
    def project_roles(self) -> tuple[str, ...]:
        return DEPLOYER_PROJECT_ROLES if self.purpose == "deployer" else PREVIEW_PROJECT_ROLES

    @property
    def bucket_role(self) -> str:
        return DEPLOYER_BUCKET_ROLE if self.purpose == "deployer" else PREVIEW_BUCKET_ROLE


@dataclass(frozen=True)
class Settings:
    repository: str
    """`owner/name` exactly as GitHub spells it."""
    projects: dict[str, str]
    """stack -> gcp:project of Pulumi.<stack>.yaml."""
    node_accounts: dict[str, str]
    """stack -> cluster.nodeServiceAccount of Pulumi.<stack>.yaml."""
    bucket_location: str = "europe-west4"
    prod_approval: ProdApproval = "reviewers"
    """reviewers: the `prod`/`prod-preview` environments have required reviewers (public repositories, or
    GitHub Enterprise). maintainers: no reviewers needed; prod deploys only on a maintainer's
    workflow_dispatch of main, and no pull request gets prod credentials (docs/ci.md)."""
    maintainers: tuple[str, ...] = ()
    """GitHub numeric user ids (the `actor_id` claim) allowed to dispatch the prod deploy (maintainers mode)."""


_REPO = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")


def stack_facts(stack: str, root: pathlib.Path = ROOT) -> tuple[str, str]:
    """(gcp:project, cluster.nodeServiceAccount) of Pulumi.<stack>.yaml, checked."""
    path = root / f"Pulumi.{stack}.yaml"
    config = (yaml_io.load(path.read_text()) or {}).get("config") or {}
    project = config.get("gcp:project")
    if not project:
        raise ConfigError(f"{path.name}: `gcp:project` is missing; set the stack's Google Cloud project")
    cluster = config.get("llm-platform:cluster") or {}
    node = cluster.get("nodeServiceAccount")
    if not node:
        raise ConfigError(
            f"{path.name}: `llm-platform:cluster.nodeServiceAccount` is missing; set it to "
            f"{sa_email(node_account_id(cluster.get('name', 'cluster')), project)} (ci/identities creates it, so the "
            "deployer needs no IAM admin role)")
    if not str(node).endswith(f"@{project}.iam.gserviceaccount.com"):
        raise ConfigError(f"{path.name}: `llm-platform:cluster.nodeServiceAccount` {node!r} must be a service account "
                          f"of the stack's project {project} (name@{project}.iam.gserviceaccount.com)")
    return project, node


def load_settings(config: dict[str, Any], root: pathlib.Path = ROOT) -> Settings:
    """Settings from the identities program's config (keys without the project prefix) and the stack files."""
    repo = config.get("repository")
    if not repo or not _REPO.match(str(repo)):
        raise ConfigError(f"`repository` {repo!r}: set it to the GitHub repository as owner/name, e.g. my-org/llm-platform")
    approval = config.get("prodApproval", "reviewers")
    if approval not in ("reviewers", "maintainers"):
        raise ConfigError(f"`prodApproval` {approval!r}: use reviewers (environments with required reviewers) "
                          "or maintainers (no reviewers: prod deploys on a maintainer's workflow_dispatch)")
    raw = config.get("maintainers") or []
    maintainers = tuple(str(m) for m in raw)
    if approval == "maintainers" and not maintainers:
        raise ConfigError("`maintainers` is empty but `prodApproval` is maintainers: list the GitHub user ids "
                          "(gh api users/<login> --jq .id) allowed to deploy prod")
    if any(not m.isdigit() for m in maintainers):
        raise ConfigError(f"`maintainers` {list(maintainers)}: numeric GitHub user ids only (the actor_id claim; "
                          "logins can be renamed and re-registered)")
    facts = {stack: stack_facts(stack, root) for stack in STACKS}
    return Settings(
        repository=str(repo),
        projects={s: p for s, (p, _) in facts.items()},
        node_accounts={s: n for s, (_, n) in facts.items()},
        bucket_location=str(config.get("bucketLocation", "europe-west4")),
        prod_approval=approval,
        maintainers=maintainers,
    )


def _deployer_clauses(s: Settings, stack: str) -> tuple[Clause, ...]:
    on_dispatch = stack == "prod" and s.prod_approval == "maintainers"
    clauses = [
        Clause("repository", "==", s.repository),
        Clause("environment", "==", stack),
        Clause("ref", "==", MAIN),
        # main must carry branch protection or a ruleset: whoever can push to it drives the deployers.
        Clause("ref_protected", "==", "true"),
        Clause("event_name", "==", "workflow_dispatch" if on_dispatch else "push"),
        Clause("job_workflow_ref", "==", f"{s.repository}/{DEPLOY_WORKFLOW}@{MAIN}"),
    ]
    if on_dispatch:
        clauses.append(Clause("actor_id", "in", s.maintainers))
        # A re-run keeps the first run's actor_id: without this, anyone with write access could re-run a
        # maintainer's old dispatch and roll prod back to that commit. A failed deploy is dispatched again.
        clauses.append(Clause("run_attempt", "==", "1"))
    return tuple(clauses)


def _preview_clauses(s: Settings, stack: str) -> tuple[Clause, ...]:
    return (
        Clause("repository", "==", s.repository),
        Clause("environment", "==", f"{stack}-preview"),
        Clause("event_name", "==", "pull_request"),
        Clause("base_ref", "==", "main"),
        # Weak for a PR (its author can edit pr.yaml), but keeps other workflows of the repository out.
        Clause("job_workflow_ref", "startsWith", f"{s.repository}/{PR_WORKFLOW}@"),
    )


def identities(s: Settings) -> list[Identity]:
    found = []
    for stack in STACKS:
        found.append(Identity(stack, "deployer", s.projects[stack], _deployer_clauses(s, stack)))
        # maintainers mode: no pull request gets prod credentials; prod is previewed only on main, by the
        # deploy's own gated preview (tools/deploy.py) that a maintainer dispatched.
        if not (stack == "prod" and s.prod_approval == "maintainers"):
            found.append(Identity(stack, "preview", s.projects[stack], _preview_clauses(s, stack)))
    return found


def workload_identity_member(pool_name: str, environment: str) -> str:
    """The principalSet a service account trusts: its own pool, and only tokens of its environment.

    `pool_name` is the pool's resource name, projects/<number>/locations/global/workloadIdentityPools/<id>."""
    return f"principalSet://iam.googleapis.com/{pool_name}/attribute.environment/{environment}"


def program(s: Settings) -> None:
    """Register everything (run by ci/identities/__main__.py, and by the tests under mocks)."""
    import pulumi
    import pulumi_gcp as gcp

    buckets = {}
    node_accounts = {}
    for stack in STACKS:
        project = s.projects[stack]
        buckets[stack] = gcp.storage.Bucket(
            f"{stack}-state", name=state_bucket(stack), project=project, location=s.bucket_location,
            uniform_bucket_level_access=True, public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),  # a bad write can be rolled back
            opts=pulumi.ResourceOptions(protect=True))
        node_id, _, _ = s.node_accounts[stack].partition("@")
        node = gcp.serviceaccount.Account(
            f"{stack}-nodes", account_id=node_id, project=project, display_name=f"GKE nodes ({stack})")
        node_accounts[stack] = node
        for role in NODE_ROLES:
            gcp.projects.IAMMember(f"{stack}-nodes-{role.rsplit('.', 1)[-1]}", project=project, role=role,
                                   member=f"serviceAccount:{s.node_accounts[stack]}",
                                   opts=pulumi.ResourceOptions(depends_on=[node]))

    for ident in identities(s):
        name = f"{ident.stack}-{ident.purpose}"
        account = gcp.serviceaccount.Account(name, account_id=ident.account_id, project=ident.project,
                                             display_name=f"CI {ident.purpose} of {ident.stack}")
        member = f"serviceAccount:{ident.email}"
        deps = pulumi.ResourceOptions(depends_on=[account])
        for role in ident.project_roles:
            gcp.projects.IAMMember(f"{name}-{role.rsplit('.', 1)[-1]}", project=ident.project, role=role,
                                   member=member, opts=deps)
        gcp.storage.BucketIAMMember(f"{name}-state", bucket=buckets[ident.stack].name, role=ident.bucket_role,
                                    member=member, opts=deps)
        if ident.purpose == "deployer":
            gcp.serviceaccount.IAMMember(f"{name}-acts-as-nodes", service_account_id=node_accounts[ident.stack].name,
                                         role=NODE_ACCOUNT_USER_ROLE, member=member, opts=deps)
        pool = gcp.iam.WorkloadIdentityPool(name, workload_identity_pool_id=ident.pool_id, project=ident.project,
                                            display_name=f"GitHub: {ident.environment}")
        provider = gcp.iam.WorkloadIdentityPoolProvider(
            name, workload_identity_pool_id=pool.workload_identity_pool_id, workload_identity_pool_provider_id=PROVIDER_ID,
            project=ident.project, attribute_mapping=dict(ATTRIBUTE_MAPPING), attribute_condition=ident.condition,
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=ISSUER))
        gcp.serviceaccount.IAMMember(
            f"{name}-federated", service_account_id=account.name, role=WORKLOAD_IDENTITY_USER_ROLE,
            member=pulumi.Output.all(pool.name, ident.environment).apply(lambda a: workload_identity_member(a[0], a[1])))
        # What the GitHub environment's variables take (docs/ci.md, "GitHub settings").
        pulumi.export(f"{ident.environment}.GCP_WORKLOAD_IDENTITY_PROVIDER", provider.name)
        pulumi.export(f"{ident.environment}.PULUMI_BACKEND_URL", f"gs://{state_bucket(ident.stack)}")
    # What the repository variable takes: the workflows skip the jobs these identities would refuse.
    pulumi.export(PROD_APPROVAL_VARIABLE, s.prod_approval)


def main(config: Optional[dict[str, Any]] = None) -> None:
    """Entry point of ci/identities: config errors stop the run before anything is registered."""
    import pulumi

    cfg = pulumi.Config()
    raw = config if config is not None else {
        "repository": cfg.get("repository"), "bucketLocation": cfg.get("bucketLocation") or "europe-west4",
        "prodApproval": cfg.get("prodApproval") or "reviewers", "maintainers": cfg.get_object("maintainers") or []}
    try:
        settings = load_settings(raw)
    except ConfigError as err:
        raise pulumi.RunError(f"ci/identities: {err}") from None
    program(settings)
