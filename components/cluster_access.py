"""How commands that run outside the Kubernetes provider reach the cluster.

Its own module so that the SR2 engine (kyverno.py) and the security group (security.py) do not import
the GKE cluster component (cluster.py) for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi


@dataclass
class ClusterAccess:
    """How commands that run outside the provider (the destroy-time webhook cleanup) reach the cluster."""

    kubeconfig: Optional[pulumi.Input[str]] = None
    """Kubeconfig contents (secret) of a cluster this stack created."""
    context: Optional[str] = None
    """kubeconfig context of an existing cluster."""
    kubeconfig_path: Optional[str] = None
    """kubeconfig file of an existing cluster (default: $KUBECONFIG or ~/.kube/config)."""
