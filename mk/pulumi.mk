# Real Pulumi engine (docs/real-engines.md): the Pulumi CLI and the pulumi-kubernetes provider, built from the Go
# modules pinned under engines/pulumi/<name>/ (one module each: the CLI's and the provider's graphs pin different
# github.com/pulumi/pulumi/pkg/v3 versions) into $(ENGINES_CACHE), keyed by version; a stamp keyed by version and
# go.sum hash makes a second `make pulumi-engines` cost nothing.
#
#   make pulumi-engines        build what is missing
#   eval "$(make -s pulumi-env)"  (or: source engines/pulumi/env.sh)  PATH/PULUMI_HOME/... for offline use
#
# Not built, because the Go module proxy does not serve them: the Python language host
# (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3, never tagged upstream) and the pulumi-command
# provider (github.com/pulumi/pulumi-command/provider). Without the language host the CLI runs Python programs only
# as Automation API inline programs (the SDK serves the language runtime in-process: `pulumi ... --client`).

PULUMI_ENGINES_SRC := engines/pulumi
PULUMI_GO ?= go
PULUMI_GOFLAGS := -trimpath

# The CLI: its version is the pin of github.com/pulumi/pulumi/pkg/v3 in engines/pulumi/cli/go.mod.
PULUMI_CLI_VERSION := $(shell awk '$$1=="github.com/pulumi/pulumi/pkg/v3"{print $$2}' $(PULUMI_ENGINES_SRC)/cli/go.mod)
PULUMI_CLI_SUM := $(shell sha256sum $(PULUMI_ENGINES_SRC)/cli/go.sum | cut -c1-12)
PULUMI_CLI_DIR := $(ENGINES_CACHE)/pulumi-$(PULUMI_CLI_VERSION:v%=%)
PULUMI_CLI_STAMP := $(PULUMI_CLI_DIR)/.built-$(PULUMI_CLI_VERSION)-$(PULUMI_CLI_SUM)

# pulumi-kubernetes: the proxy serves the provider module only as the pseudo-version of the v4.25.0 release commit
# (see engines/pulumi/kubernetes/go.mod); the binary reports the release it is, 4.25.0.
PULUMI_K8S_VERSION := 4.25.0
PULUMI_K8S_MODULE := github.com/pulumi/pulumi-kubernetes/provider/v4
PULUMI_K8S_SUM := $(shell sha256sum $(PULUMI_ENGINES_SRC)/kubernetes/go.sum | cut -c1-12)
PULUMI_K8S_DIR := $(ENGINES_CACHE)/pulumi-resource-kubernetes-$(PULUMI_K8S_VERSION)
PULUMI_K8S_STAMP := $(PULUMI_K8S_DIR)/.built-$(PULUMI_K8S_VERSION)-$(PULUMI_K8S_SUM)

# Where `pulumi-env` points the CLI's own state (credentials, workspace files, plugin cache) and the file backend.
PULUMI_ENV_HOME ?= $(or $(TMPDIR),/tmp)/llm-platform-pulumi/home
PULUMI_ENV_BACKEND ?= $(or $(TMPDIR),/tmp)/llm-platform-pulumi/state

.PHONY: pulumi-engines pulumi-cli pulumi-kubernetes-provider pulumi-env

pulumi-engines: pulumi-cli pulumi-kubernetes-provider

pulumi-cli: $(PULUMI_CLI_STAMP)
pulumi-kubernetes-provider: $(PULUMI_K8S_STAMP)

# `pulumi version` prints the version set through -X (the CLI's release build does the same).
# No prerequisites: the stamp's name carries the version and the go.sum hash, so its presence is the whole check.
$(PULUMI_CLI_STAMP):
	@test -n "$(PULUMI_CLI_VERSION)" || { echo "no github.com/pulumi/pulumi/pkg/v3 pin in $(PULUMI_ENGINES_SRC)/cli/go.mod" >&2; exit 2; }
	mkdir -p $(@D)
	rm -f $(@D)/.built-*
	cd $(PULUMI_ENGINES_SRC)/cli && start=$$(date +%s) && \
	  $(PULUMI_GO) build $(PULUMI_GOFLAGS) \
	    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$(PULUMI_CLI_VERSION)" \
	    -o $(@D)/pulumi.tmp github.com/pulumi/pulumi/pkg/v3/cmd/pulumi && \
	  mv $(@D)/pulumi.tmp $(@D)/pulumi && \
	  echo "pulumi $(PULUMI_CLI_VERSION): built in $$(( $$(date +%s) - start ))s"
	touch $@

# The provider's main embeds schema-embed.json and terraform-mapping-embed.json, which upstream's `go generate`
# (cmd/pulumi-resource-kubernetes/generate.go) writes from schema.json with the version set; the module zip ships
# only their sources, and `go build -overlay` may not add files under GOMODCACHE. So the build copies the module
# from the module cache into a scratch directory beside the binary, runs that same generator there, and builds with
# a scratch copy of our go.mod (-modfile) that replaces the module by that directory; the scratch directory is removed
# afterwards. CGO_ENABLED=0 and -X .../pkg/version.Version as upstream's Makefile does.
$(PULUMI_K8S_STAMP):
	mkdir -p $(@D)
	rm -f $(@D)/.built-*
	set -e; cd $(PULUMI_ENGINES_SRC)/kubernetes; start=$$(date +%s); \
	  $(PULUMI_GO) mod download $(PULUMI_K8S_MODULE); \
	  mod=$$($(PULUMI_GO) list -m -f '{{.Dir}}' $(PULUMI_K8S_MODULE)); \
	  work=$(@D)/.build; rm -rf $$work; mkdir -p $$work; trap 'chmod -R u+w "$$work"; rm -rf "$$work"' EXIT; \
	  cp -R $$mod $$work/provider; chmod -R u+w $$work/provider; \
	  $(PULUMI_GO) build $(PULUMI_GOFLAGS) -o $$work/generate $$mod/cmd/pulumi-resource-kubernetes/generate.go; \
	  (cd $$work/provider/cmd/pulumi-resource-kubernetes && VERSION=$(PULUMI_K8S_VERSION) $$work/generate); \
	  cp go.mod go.sum $$work/; \
	  $(PULUMI_GO) mod edit -replace $(PULUMI_K8S_MODULE)=$$work/provider $$work/go.mod; \
	  CGO_ENABLED=0 $(PULUMI_GO) build $(PULUMI_GOFLAGS) -modfile $$work/go.mod \
	    -ldflags "-X $(PULUMI_K8S_MODULE)/pkg/version.Version=$(PULUMI_K8S_VERSION)" \
	    -o $(@D)/pulumi-resource-kubernetes.tmp $(PULUMI_K8S_MODULE)/cmd/pulumi-resource-kubernetes; \
	  mv $(@D)/pulumi-resource-kubernetes.tmp $(@D)/pulumi-resource-kubernetes; \
	  echo "pulumi-resource-kubernetes $(PULUMI_K8S_VERSION): built in $$(( $$(date +%s) - start ))s"
	touch $@

# Prints the environment for running the CLI offline: the engines first on PATH, a local file backend (no login
# needed), a passphrase for secrets, and no update check or plugin download. The engine takes a plugin named
# pulumi-resource-<name> from $PATH whatever version a program asks for, unless PULUMI_IGNORE_AMBIENT_PLUGINS is set
# (sdk/v3 go/common/workspace/plugins.go), so pulumi-kubernetes==4.34.2 programs get the 4.25.0 provider with two
# warnings ("using pulumi-resource-kubernetes from $PATH ...", "expected to have version >=4.34.2, but has 4.25.0");
# installing it into $PULUMI_HOME/plugins instead would not match: the plugin-cache lookup wants exactly that version.
pulumi-env:
	@echo 'export PATH="$(PULUMI_CLI_DIR):$(PULUMI_K8S_DIR):$$PATH"'
	@echo 'unset PULUMI_IGNORE_AMBIENT_PLUGINS'
	@echo 'export PULUMI_HOME="$(PULUMI_ENV_HOME)"'
	@echo 'export PULUMI_BACKEND_URL="file://$(PULUMI_ENV_BACKEND)"'
	@echo 'export PULUMI_CONFIG_PASSPHRASE="$${PULUMI_CONFIG_PASSPHRASE-local-e2e}"'
	@echo 'export PULUMI_SKIP_UPDATE_CHECK=1'
	@echo 'export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true'
	@echo 'mkdir -p "$(PULUMI_ENV_HOME)" "$(PULUMI_ENV_BACKEND)"'
