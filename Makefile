# cradle: build, test and install. Most targets need root (mounts, overlayfs).
SHELL := /bin/bash

GO            ?= go
BIN           := bin/cradle
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
COMMIT        ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS       := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOLANGCI_LINT_VERSION := v2.15.0
GOBIN         ?= $(shell $(GO) env GOPATH)/bin

# Debian packages cradle uses at run time, and the tests' busybox-static.
# criu: CheckpointContainer and restore (CRIU 4.0 or newer on kernels from 6.13 on).
# qemu-system-x86, qemu-system-common (virtiofsd) and linux-image-amd64: the VMM, the shared-directory
# daemon and the guest kernel of vm handlers (microVM pods); crun also runs inside their guests.
DEB_PACKAGES  := runc crun conmon criu busybox-static containernetworking-plugins iproute2 iptables nftables ca-certificates git make \
		 qemu-system-x86 qemu-system-common linux-image-amd64

PREFIX        ?= /usr/local
DESTDIR       ?=
UNITDIR       ?= /etc/systemd/system
CONFIG        ?=
SERVE_ARGS    := $(if $(CONFIG),--config $(CONFIG),)

.PHONY: all deps build run test integration check bench lint lint-install install clean conformance e2e-kubelet runc-userns

all: build

## deps: install the Debian packages cradle needs (root; skips what is installed)
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go is needed (1.21 or newer fetches the toolchain go.mod asks for)"; exit 1; }

## build: the static cradle binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/shim

## run: install packages, build, and serve CRI on /run/cradle/cradle.sock with the built-in defaults
run: deps build
	./$(BIN) serve $(SERVE_ARGS)

## test: unit tests (root needed for the image store's overlayfs tests)
test:
	$(GO) test -count=1 ./cmd/... ./pkg/...

## integration: end-to-end tests of the real daemon over its socket (root)
integration:
	$(GO) test -count=1 -timeout 20m ./integration/...

## check: everything CI runs: packages, vet, build, unit and integration tests
check: deps runc-userns
	$(GO) vet ./...
	$(MAKE) build
	$(GO) test -count=1 -timeout 25m ./...

## e2e-kubelet: a real kubelet (k8s.io/kubernetes through the Go module proxy, cached in _output/tools/kubelet)
## runs static pods on bin/cradle in a private mount namespace; checks through kubelet's API and the CRI (root)
e2e-kubelet: deps build
	integration/kubelet/run.sh

## bench: benchmarks (figures, never pass/fail)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 5x ./pkg/...
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./integration

lint-install:
	@test -x $(GOBIN)/golangci-lint && $(GOBIN)/golangci-lint version 2>/dev/null | grep -q "$(GOLANGCI_LINT_VERSION:v%=%)" || \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

## lint: golangci-lint with .golangci.yml
lint: lint-install
	$(GOBIN)/golangci-lint run ./...

## install: the binary, the systemd unit and, unless one exists, the default config (DESTDIR, PREFIX)
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/cradle
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)/etc/cradle/certs.d $(DESTDIR)/var/lib/cradle/preload
	sed 's|@PREFIX@|$(PREFIX)|g' configs/cradle.service > $(DESTDIR)$(UNITDIR)/cradle.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cradle.service
	test -e $(DESTDIR)/etc/cradle/cradle.toml || install -m 0644 configs/cradle.toml $(DESTDIR)/etc/cradle/cradle.toml

clean:
	rm -rf bin

# The conformance kit (test images served offline): ../shared/conformance next to the repo, else /work/shared/conformance.
CONFORMANCE_KIT ?= $(firstword $(wildcard $(abspath ../shared/conformance)) /work/shared/conformance)

## conformance: critest (cri-tools v1.37.0, built through the Go module proxy) against cradle, per handler (root)
conformance: deps build runc-userns
	CONFORMANCE_KIT=$(CONFORMANCE_KIT) integration/conformance/run.sh

# runc-userns: a runc new enough for pod user namespaces (idmapped mounts: runc >= 1.2; Debian 12's is
# 1.1.5), built from source through the Go module proxy with cgo and libseccomp (nothing of runc is
# committed). The user-namespace integration test and the conformance handler `runc-userns` use it.
RUNC_USERNS_VERSION ?= v1.3.7
RUNC_USERNS_DIR     ?= $(CURDIR)/_output/tools/runc-userns
RUNC_USERNS         := $(RUNC_USERNS_DIR)/runc

## runc-userns: build runc $(RUNC_USERNS_VERSION) into _output/tools/runc-userns/runc (cached by version)
runc-userns:
	@if [ -x $(RUNC_USERNS) ] && [ "$$(cat $(RUNC_USERNS_DIR)/VERSION 2>/dev/null)" = "$(RUNC_USERNS_VERSION)" ]; then exit 0; fi; \
	for p in gcc libc6-dev pkg-config libseccomp-dev; do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	mkdir -p $(RUNC_USERNS_DIR) && \
	CGO_ENABLED=1 GOFLAGS=-mod=mod GOBIN=$(RUNC_USERNS_DIR) $(GO) install -trimpath -tags seccomp \
		-ldflags "-X main.version=$(RUNC_USERNS_VERSION:v%=%)" github.com/opencontainers/runc@$(RUNC_USERNS_VERSION) && \
	echo $(RUNC_USERNS_VERSION) > $(RUNC_USERNS_DIR)/VERSION && $(RUNC_USERNS) --version
