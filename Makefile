# llm-platform: offline render, tests, and the real deployment path.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
STACK ?= dev
OUT ?= build/$(STACK)
# Local file state backend and passphrase secrets by default: no Pulumi Cloud account needed.
PULUMI_BACKEND_URL ?= file://$(HOME)/.pulumi-state/llm-platform
export PULUMI_BACKEND_URL

BIN := $(VENV)/bin
# Real engines (docs/real-engines.md): built from the Go modules pinned under engines/, into a cache outside
# the repository keyed by engine and version, so a second build costs nothing.
ENGINES_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/llm-platform/engines
export ENGINES_CACHE
PULUMI_INSTALL_HINT := Pulumi CLI not found. Install it with: curl -fsSL https://get.pulumi.com | sh   (see https://www.pulumi.com/docs/install/)

.PHONY: help venv pack synth lint test bench preview up destroy verify bench-isolation clean

help:
	@echo "make synth STACK=dev|prod [OUT=dir]  offline render (no CLI, no cloud)"
	@echo "make test                           lint (ruff, mypy), then unit tests under Pulumi mocks + policy checkers"
	@echo "make pack                           the CrossGuard pack's own venv (policies/crossguard/venv)"
	@echo "make preview|up STACK=...           real deployment with the Pulumi CLI"
	@echo "make verify STACK=...               live SR1/SR2 checks against the stack's cluster"
	@echo "make bench [BENCH_STACK=prod] [RUNS=5] [BENCH_DIR=build]  render vs import floor, 1 vs 1,000 tenants, RSS"
	@echo "make bench-isolation STACK=... [RUNS=5]  runc vs gVisor Jobs on the stack's cluster (skips without one)"

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# The CrossGuard pack runs in its own interpreter: the CLI starts <pack>/<virtualenv>/bin/python
# (PulumiPolicy.yaml `runtime.options.virtualenv`) and installs nothing for a local --policy-pack.
PACK := policies/crossguard
PACK_VENV := $(PACK)/venv
$(PACK_VENV)/.installed: $(PACK)/requirements.txt
	test -x $(PACK_VENV)/bin/python || $(PY) -m venv $(PACK_VENV)
	$(PACK_VENV)/bin/python -m pip install --quiet -r $(PACK)/requirements.txt
	touch $@

pack: $(PACK_VENV)/.installed

synth: venv
	$(BIN)/python -m tools.render --stack $(STACK) --out $(OUT)

# Linters first: a lint or type error fails `make test` (config in pyproject.toml).
lint: venv
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

# pytest-xdist: one worker per core (TEST_WORKERS=0 runs in this process); the workers share the session's
# mock runs and renders (tests/conftest.py).
TEST_WORKERS ?= auto
test: venv pack lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

define pulumi_stack
	@command -v pulumi >/dev/null || { echo "$(PULUMI_INSTALL_HINT)" >&2; exit 127; }
	@test -n "$${PULUMI_CONFIG_PASSPHRASE:-}$${PULUMI_CONFIG_PASSPHRASE_FILE:-}" || { echo "set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE): stack secrets are passphrase-encrypted" >&2; exit 2; }
	@case "$(PULUMI_BACKEND_URL)" in file://*) mkdir -p "$(patsubst file://%,%,$(PULUMI_BACKEND_URL))";; esac
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi stack select --create --secrets-provider passphrase "$(STACK)"
endef

preview: venv pack
	$(pulumi_stack)
	pulumi preview --stack "$(STACK)" --diff --policy-pack $(PACK)

up: venv pack
	$(pulumi_stack)
	pulumi up --stack "$(STACK)" --policy-pack $(PACK)

destroy: venv
	$(pulumi_stack)
	pulumi destroy --stack "$(STACK)"

verify: venv
	$(BIN)/python -m tools.verify --stack $(STACK)

RUNS ?= 5
bench-isolation: venv
	$(BIN)/python -m tools.bench_isolation --stack $(STACK) --runs $(RUNS)

clean:
	rm -rf build

bench: venv
	$(BIN)/python -m tools.bench --stack $(or $(BENCH_STACK),prod) --runs $(or $(RUNS),5) $(if $(BENCH_DIR),--dir $(BENCH_DIR))

# One fragment per real engine tier.
include $(sort $(wildcard mk/*.mk))
