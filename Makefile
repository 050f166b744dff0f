# Two entry points on a fresh machine: `make demo` and `make test`.
# Everything they need (venv, Debian packages, the outer dockerd) is set up here.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
VENV_STAMP  := $(VENV)/.installed-$(shell sha256sum requirements-dev.txt | cut -c1-12)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
COLLECTIONS := $(CURDIR)/.build/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/u7s/cluster
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
TESTBED     := testbed/testbed.sh
TESTBED_INVENTORY := inventories/testbed/hosts.yml

.PHONY: help
help:
	@echo "make demo      test bed up (2 hosts) + playbooks/site.yml + kubectl get nodes"
	@echo "make test      unit tests, lint, sanity, collection build, test-bed integration"
	@echo "make testbed-up / testbed-down   the local hosts only"

$(VENV_STAMP): requirements-dev.txt
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.PHONY: venv
venv: $(VENV_STAMP) $(COLLECTION_LINK)

# Ansible finds this checkout as u7s.cluster through a link.
$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

.PHONY: deps
deps:
	$(TESTBED) deps
	@missing=$$(for p in jq zstd gcc libc6-dev; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# The offline Kubernetes bundle and the images built from it (cached by pins;
# ../shared/artifacts/ is used when it holds a matching bundle).
.PHONY: artifacts
artifacts: deps
	artifacts/bundle.sh build
	artifacts/bundle.sh verify
	artifacts/images.sh build
	artifacts/images.sh verify

# The same for the previous Kubernetes minor (artifacts/versions-previous.env),
# the upgrade test's starting point. Built before the current ones, so that the
# images both share (flannel, busybox) end up tagged as the current build has them.
PREVIOUS_PINS = U7S_VERSIONS_FILE=$(CURDIR)/artifacts/versions-previous.env
.PHONY: artifacts-previous
artifacts-previous: deps
	$(PREVIOUS_PINS) artifacts/bundle.sh build
	$(PREVIOUS_PINS) artifacts/bundle.sh verify
	$(PREVIOUS_PINS) artifacts/images.sh build
	$(PREVIOUS_PINS) artifacts/images.sh verify

# The nerdctl engine's own binaries (artifacts/engine-tools.sh: nerdctl, bypass4netns with our
# patch, nerdctl's rootless scripts; cached by artifacts/engine-tools.env), for the podman-nerdctl, ha
# and nerdctl scenarios.
.PHONY: engine-tools engine-tools-deps
engine-tools: engine-tools-deps
	artifacts/engine-tools.sh build
	artifacts/engine-tools.sh verify

engine-tools-deps: deps
	@missing=$$(for p in libseccomp-dev pkg-config binutils patch; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

.PHONY: testbed-up
testbed-up: deps
	$(TESTBED) image
	$(TESTBED) up

.PHONY: testbed-down
testbed-down:
	$(TESTBED) down

.PHONY: demo
demo: venv artifacts testbed-up
	ansible-playbook -i $(TESTBED_INVENTORY) playbooks/site.yml
	@# The cluster user's kubectl on the control-plane host (the node's own, as the cluster admin).
	ansible -i $(TESTBED_INVENTORY) control_plane --become --become-user u7s -m ansible.builtin.command \
	  -a '/home/u7s/.local/bin/kubectl get nodes -o wide'
	@echo "kubeconfig on this machine: KUBECONFIG=$(CURDIR)/inventories/testbed/artifacts/kubeconfig"

.PHONY: units
units: venv
	pytest -q tests/unit

.PHONY: lint
lint: venv
	ansible-lint --profile production

.PHONY: sanity
sanity: venv
	tests/run-sanity.sh

.PHONY: build
build: venv
	tests/check-build.sh

.PHONY: integration
ENGINE_TOOLS_LOG := .build/engine-tools-build.log
integration: venv deps artifacts-previous artifacts engine-tools-deps
	$(TESTBED) image
	@# The engine tools (Go, at nice 19; 2-3 min cold) build in the background while the first
	@# checks run, which mostly wait on the test bed; the podman-nerdctl scenario needs them.
	@# The node image test (tests/integration/test_node_image.py) fails instead of skipping:
	@# the images were just built.
	mkdir -p .build; artifacts/engine-tools.sh build >$(ENGINE_TOOLS_LOG) 2>&1 & tools=$$!; \
	rc=0; { U7S_REQUIRE_IMAGES=1 pytest -q tests/integration && tests/molecule-test.sh default; } || rc=$$?; \
	wait $$tools || { echo "artifacts/engine-tools.sh build failed:"; cat $(ENGINE_TOOLS_LOG); exit 1; }; exit $$rc
	artifacts/engine-tools.sh verify
	tests/molecule-test.sh podman-nerdctl
	tests/molecule-test.sh ha

# The nerdctl-only scenario (molecule/nerdctl: a nerdctl control plane as well). Not in `make test`
# (CI's time budget): there nerdctl runs on the podman-nerdctl scenario's worker and the ha scenario's
# third control plane.
.PHONY: integration-nerdctl
integration-nerdctl: venv deps artifacts engine-tools
	$(TESTBED) image
	tests/molecule-test.sh nerdctl

.PHONY: test
test: units lint sanity build integration
