# Kyverno's own engine (docs/real-engines.md): the CLI built from the module pinned in engines/kyverno.
KYVERNO_VERSION := $(shell sed -n 's/^[[:space:]]*github.com\/kyverno\/kyverno \(v[^ ]*\).*/\1/p' engines/kyverno/go.mod)
KYVERNO_DIR := $(ENGINES_CACHE)/kyverno-$(KYVERNO_VERSION)

.PHONY: kyverno-cli kyverno-test

kyverno-cli:
	engines/build.sh engines/kyverno $(KYVERNO_DIR) github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno
	$(KYVERNO_DIR)/kubectl-kyverno version

kyverno-test: venv kyverno-cli
	$(BIN)/python -m tests.kyverno_parity --cli $(KYVERNO_DIR)/kubectl-kyverno
