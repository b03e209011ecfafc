# Kyverno's own engine (docs/real-engines.md): the CLI built from the module pinned in engines/kyverno.
KYVERNO_VERSION := $(shell sed -n 's/^[[:space:]]*github.com\/kyverno\/kyverno \(v[^ ]*\).*/\1/p' engines/kyverno/go.mod)
KYVERNO_DIR := $(ENGINES_CACHE)/kyverno-$(KYVERNO_VERSION)

.PHONY: kyverno-cli kyverno-test recipe-regressions

kyverno-cli:
	engines/build.sh engines/kyverno $(KYVERNO_DIR) github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno
	$(KYVERNO_DIR)/kubectl-kyverno version

kyverno-test: venv kyverno-cli
	$(BIN)/python -m tests.kyverno_parity --cli $(KYVERNO_DIR)/kubectl-kyverno

# The catalog's regressions against the recipe it started from, decided by the Kyverno CLI and nca. The recipe
# (GPL-3.0) is not in the repository: RECIPE_PAGE is its page at the pinned commit (tests/recipe_regressions.py).
recipe-regressions: venv kyverno-cli
	$(BIN)/python -m tests.recipe_regressions --cli $(KYVERNO_DIR)/kubectl-kyverno $(if $(RECIPE_PAGE),--page $(RECIPE_PAGE))
