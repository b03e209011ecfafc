"""One DNS configuration: the cluster's DNS paths are set only in `clusterDns`, and the guardrail catalog's egress
lockdown opens exactly the rules the agent and egress-locked serving policies open."""

from __future__ import annotations

import json

import pytest

from components import guardrails
from components import workload_isolation as wi
from components.config import ConfigError, parse
from components.platform_facts import METADATA_SERVER_ADDRESS, NODE_LOCAL_DNS_ADDRESS
from tools import mockrun

FIX = "set clusterDns.nodeLocalDnsCache / clusterDns.cloudDns instead"


def _dev(egress_lockdown: dict | None = None, cluster_dns: dict | None = None) -> dict[str, str]:
    """Pulumi.dev.yaml (agents, egress-locked serving and the whole catalog on) with these two settings."""
    overrides: dict = {}
    if egress_lockdown is not None:
        catalog = json.loads(mockrun.stack_config("dev")["llm-platform:guardrails"])
        overrides["llm-platform:guardrails"] = {**catalog, "egressLockdown": egress_lockdown}
    if cluster_dns is not None:
        overrides["llm-platform:clusterDns"] = cluster_dns
    return mockrun.stack_config("dev", overrides)


@pytest.mark.parametrize("lockdown, named", [
    ({"nodeLocalDns": NODE_LOCAL_DNS_ADDRESS}, ["nodeLocalDns"]),
    ({"cloudDns": True}, ["cloudDns"]),
    ({"cloudDns": False}, ["cloudDns"]),
    ({"nodeLocalDns": NODE_LOCAL_DNS_ADDRESS, "cloudDns": True, "allowedEgress": [{"cidr": "10.0.0.0/24",
                                                                                   "ports": [443]}]},
     ["nodeLocalDns", "cloudDns"]),
])
def test_removed_lockdown_dns_keys_are_one_clear_error(lockdown, named):
    with pytest.raises(ConfigError) as exc:
        parse(_dev(egress_lockdown=lockdown), "dev")
    message = str(exc.value)
    assert message.startswith("invalid config in Pulumi.dev.yaml: `llm-platform:guardrails.egressLockdown`: "), message
    for key in named:
        assert f"`guardrails.egressLockdown.{key}`" in message, f"the error names {key}: {message}"
    assert FIX in message, message
    assert "\n" not in message and "more problem" not in message, f"one error: {message}"


def test_program_registers_nothing_with_a_removed_lockdown_dns_key():
    import pulumi

    with pytest.raises(pulumi.RunError) as exc:
        mockrun.run("dev", _dev(egress_lockdown={"nodeLocalDns": NODE_LOCAL_DNS_ADDRESS}))
    assert "guardrails.egressLockdown.nodeLocalDns" in str(exc.value) and FIX in str(exc.value), exc.value
    assert mockrun.last_records() == [], "no resource may be registered before the config is valid"


def _egress(policies: list[dict], name: str) -> list[dict]:
    (policy,) = [p for p in policies if p["metadata"]["name"] == name]
    return policy["spec"]["egress"]


@pytest.mark.parametrize("cluster_dns", [
    {}, {"nodeLocalDnsCache": True}, {"cloudDns": True}, {"nodeLocalDnsCache": True, "cloudDns": True},
], ids=["kube-dns", "node-local", "cloud-dns", "both"])
def test_lockdown_opens_the_same_dns_rules_as_workload_isolation(cluster_dns):
    # Agents, egress-locked serving and the lockdown together, once refused when the two DNS settings disagreed.
    settings = parse(_dev(cluster_dns=cluster_dns), "dev")
    assert settings.agent_isolation.enabled and settings.serving_egress.enabled
    (lockdown,) = [p for p in guardrails.build_policies(settings) if p["metadata"]["name"] == guardrails.EGRESS_POLICY]
    locked = lockdown["spec"]["rules"][0]["generate"]["data"]["spec"]["egress"]
    isolation = wi.build_all(settings)
    agent_dns = _egress(isolation, "agent-allow-dns")
    assert _egress(isolation, "allow-dns-egress") == agent_dns
    assert locked[:len(agent_dns)] == agent_dns, "the lockdown's DNS rules are the workload-isolation ones"
    assert locked[len(agent_dns):] == [], "Pulumi.dev.yaml lists no extra destination: DNS only"
    addresses = {peer["ipBlock"]["cidr"] for rule in locked for peer in rule["to"] if "ipBlock" in peer}
    expected = ({f"{NODE_LOCAL_DNS_ADDRESS}/32"} if cluster_dns.get("nodeLocalDnsCache") else set()) | (
        {f"{METADATA_SERVER_ADDRESS}/32"} if cluster_dns.get("cloudDns") else set())
    assert addresses == expected, f"NodeLocal DNSCache / Cloud DNS exactly as clusterDns says: {addresses}"
    for rule in locked:
        assert sorted((p["protocol"], p["port"]) for p in rule["ports"]) == [("TCP", 53), ("UDP", 53)], rule
