"""Dataplane V2 observability (capability C): network policy logging.

GKE creates one cluster-scoped ``NetworkLogging`` object named ``default``
(``networking.gke.io/v1alpha1``) in every Dataplane V2 cluster; it cannot be renamed and there is
no second one. The stack therefore never creates it: it server-side-patches ``spec.cluster`` of the
existing object (``CustomResourcePatch`` with ``pulumi.com/patchForce``, since GKE's own field
manager wrote the defaults). Deleting the patch gives the fields back; the object stays.

The metrics / flow-observability half is a cluster setting
(``cluster.datapathObservability`` -> ``monitoring_config.advanced_datapath_observability_config``,
see ``components/cluster.py``). How an operator answers "why was this connection dropped?":
docs/workload-isolation.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.config import NetworkPolicyLoggingConfig

API_VERSION = "networking.gke.io/v1alpha1"
KIND = "NetworkLogging"
NAME = "default"


def network_logging_manifest(cfg: NetworkPolicyLoggingConfig) -> Optional[dict[str, Any]]:
    """The patch of NetworkLogging/default, or None when logging is off (then nothing is registered)."""
    if not cfg.enabled:
        return None
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": NAME,
            # GKE's own field manager wrote the defaults: take over spec.cluster only.
            "annotations": {"pulumi.com/patchForce": "true"},
        },
        "spec": {
            "cluster": {
                # delegate: false = log every allowed/denied connection, not only those of policies
                # annotated policy.network.gke.io/enable-logging.
                "allow": {"log": cfg.allowed, "delegate": False},
                "deny": {"log": cfg.denied, "delegate": False},
            }
        },
    }


@dataclass
class NetworkPolicyLoggingArgs:
    """Inputs of :class:`NetworkPolicyLogging`."""

    config: NetworkPolicyLoggingConfig
    """Which connections Dataplane V2 logs to Cloud Logging (`networkPolicyLogging`)."""


class NetworkPolicyLogging(pulumi.ComponentResource):
    """Server-side patch of the cluster's NetworkLogging/default object."""

    def __init__(self, name: str, args: NetworkPolicyLoggingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:observability:NetworkPolicyLogging", name, None, opts)
        import pulumi_kubernetes as k8s

        m = network_logging_manifest(args.config)
        self.patch = None
        if m is not None:
            self.patch = k8s.apiextensions.CustomResourcePatch(
                "network-logging",
                api_version=m["apiVersion"],
                kind=m["kind"],
                metadata=m["metadata"],
                spec=m["spec"],
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"denied": args.config.denied, "allowed": args.config.allowed})
