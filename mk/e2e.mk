# End to end (docs/real-engines.md, "End to end: make e2e"): the stack through the real Pulumi CLI and
# pulumi-kubernetes provider against the local control plane (tools/cluster.py), which tools/e2e.py starts and
# always stops. Needs the engines built (kube-engines, pulumi-engines); the Kyverno chart comes from the Go module
# pinned in engines/kyverno/go.mod (`go mod download`, cached after the first time).
#
#   make e2e [E2E_ARGS="--only pod-security --keep-logs build/e2e-logs"]

E2E_ARGS ?=

.PHONY: e2e

# The engines first on PATH: the CLI, and the provider the engine takes from PATH whatever version the SDK asks for.
e2e: venv kube-engines pulumi-engines
	PATH="$(PULUMI_CLI_DIR):$(PULUMI_K8S_DIR):$$PATH" $(BIN)/python -m tools.e2e $(E2E_ARGS)
