# Local Kubernetes control plane for end-to-end tests (tools/cluster.py): etcd, kube-apiserver and
# kube-controller-manager built from the modules pinned in engines/kubernetes/go.mod, no kubelet.
GO ?= go
KUBE_MOD := engines/kubernetes
# go.mod is the one place the version lives; tools/cluster.py reads it the same way.
KUBE_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" { print $$2; exit }' $(KUBE_MOD)/go.mod)
KUBE_ENGINES := $(ENGINES_CACHE)/kubernetes-$(KUBE_VERSION)
# The stamp names the version and the pinned module graph: a go.mod/go.sum change rebuilds, nothing else does.
KUBE_PIN := $(shell cat $(KUBE_MOD)/go.mod $(KUBE_MOD)/go.sum | sha256sum | cut -c1-16)
KUBE_STAMP := $(KUBE_ENGINES)/.built-$(KUBE_PIN)
KUBE_BINS := $(addprefix $(KUBE_ENGINES)/,etcd kube-apiserver kube-controller-manager)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
# As the upstream release build (hack/lib/golang.sh): static, stripped, these tags, version stamped into
# client-go and component-base (else /version says v0.0.0-master and the binary version parses as 0.0).
KUBE_TAGS := selinux,notest,grpcnotrace
KUBE_LDFLAGS := -s -w $(foreach p,k8s.io/client-go/pkg/version k8s.io/component-base/version,\
	-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=$(KUBE_MINOR) -X $(p).gitTreeState=clean)
CLUSTER_ARGS ?=

.PHONY: kube-engines kube-engines-missing cluster-up cluster-down cluster-status

kube-engines: $(KUBE_STAMP)

# A binary deleted by hand rebuilds even though the stamp is there.
$(KUBE_STAMP): $(if $(filter-out $(wildcard $(KUBE_BINS)),$(KUBE_BINS)),kube-engines-missing)
	@test -n "$(KUBE_VERSION)" || { echo "no k8s.io/kubernetes version in $(KUBE_MOD)/go.mod" >&2; exit 1; }
	mkdir -p "$(KUBE_ENGINES)"
	rm -f "$(KUBE_ENGINES)"/.built-*
	cd $(KUBE_MOD) && CGO_ENABLED=0 $(GO) build -trimpath -tags $(KUBE_TAGS) -ldflags "$(KUBE_LDFLAGS)" \
		-o "$(KUBE_ENGINES)/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
	cd $(KUBE_MOD) && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o "$(KUBE_ENGINES)/etcd" go.etcd.io/etcd/server/v3
	touch "$@"

# stdlib-only tool: runs on the interpreter alone, no venv needed.
cluster-up: kube-engines
	$(PY) -m tools.cluster up $(CLUSTER_ARGS)

cluster-down:
	$(PY) -m tools.cluster down $(CLUSTER_ARGS)

cluster-status:
	$(PY) -m tools.cluster status $(CLUSTER_ARGS)
