"""llm-platform guardrails: a mandatory CrossGuard pack, run with `pulumi preview --policy-pack policies/crossguard`."""

import pulumi
from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

import guardrails


def _report_all(messages, report_violation):
    for message in messages:
        report_violation(message)


def _resources(args):
    return [guardrails.Resource(r.resource_type, r.name, r.props, r.urn) for r in args.resources]


def _no_legacy_addon(args, report_violation):
    if args.resource_type == guardrails.CLUSTER:
        _report_all(guardrails.legacy_network_policy_addon(args.name, args.props), report_violation)


def _protected_namespaces():
    # The engine passes the stack's config to the pack (PULUMI_CONFIG), so a stack that changes
    # networkPolicy.protectedNamespaces is checked on its own list.
    return guardrails.protected_namespaces(pulumi.Config("llm-platform").get_object("networkPolicy"))


def _kyverno_pinned(args, report_violation):
    _report_all(guardrails.unpinned_kyverno(args.resource_type, args.name, args.props), report_violation)


PolicyPack(
    name="llm-platform-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        StackValidationPolicy(
            name="security-requires-dataplane-v2",
            description="With the security group on, every GKE cluster uses ADVANCED_DATAPATH (else NetworkPolicies are not enforced).",
            validate=lambda args, rv: _report_all(guardrails.security_without_dataplane_v2(_resources(args)), rv),
        ),
        ResourceValidationPolicy(
            name="no-legacy-network-policy-addon",
            description="GKE clusters do not enable the legacy network-policy addon.",
            validate=_no_legacy_addon,
        ),
        ResourceValidationPolicy(
            name="kyverno-chart-pinned",
            description="Kyverno Helm releases and charts are pinned to an exact version.",
            validate=_kyverno_pinned,
        ),
        StackValidationPolicy(
            name="network-policies-default-deny",
            description="Every protected namespace (networkPolicy.protectedNamespaces) has a default-deny-ingress policy.",
            validate=lambda args, rv: _report_all(
                guardrails.missing_default_deny(_resources(args), _protected_namespaces()), rv),
        ),
    ],
)
