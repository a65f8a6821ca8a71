# cradle: build, test and install. Most targets need root (mounts, overlayfs).
SHELL := /bin/bash

GO            ?= go
BIN           := bin/cradle
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
COMMIT        ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS       := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# grpcnotrace: gRPC without golang.org/x/net/trace, which cradle never enables. Its html/template
# keeps every exported method of every linked type (reflect by name): 6 MB of binary, 3 MB of the
# idle daemon's RSS, and it registers /debug/requests on http.DefaultServeMux.
# nri_no_wasm: NRI without WebAssembly plugins (wazero): cradle runs executable NRI plugins and
# serves socket ones; a .wasm in plugin_path fails to launch, saying so. 2.3 MB of binary, about
# 0.5 MB of the idle daemon's RSS.
GO_TAGS       := grpcnotrace nri_no_wasm
GOLANGCI_LINT_VERSION := v2.15.0
GOBIN         ?= $(shell $(GO) env GOPATH)/bin

# Debian packages namespace pods need at run time, and the tests' busybox-static (make deps).
# criu: CheckpointContainer and restore (CRIU 4.0 or newer on kernels from 6.13 on).
DEB_PACKAGES  := runc crun conmon criu busybox-static containernetworking-plugins iproute2 iptables nftables ca-certificates git make strace
# What vm handlers (microVM pods) add (make deps-vm): the VMM and the shared-directory daemon
# (qemu-system-common's virtiofsd), kmod's depmod for the guest's modules, and cpio(1), with which
# the tests read back the initramfs cradle writes; crun also runs inside the guests. Their kernel is Debian's,
# unpacked into GUEST_KERNEL_DIR with dpkg-deb, never installed on the host (no initramfs, no /boot).
VM_PACKAGES   := qemu-system-x86 qemu-system-common kmod cpio
GUEST_KERNEL_DIR ?= /var/lib/cradle/guest
GUEST_KERNEL_PKG ?= linux-image-amd64

PREFIX        ?= /usr/local
DESTDIR       ?=
UNITDIR       ?= /etc/systemd/system
CONFIG        ?=
SERVE_ARGS    := $(if $(CONFIG),--config $(CONFIG),)

.PHONY: all deps deps-vm guest-kernel criu kubelet build run test integration check bench bench-compare lint lint-install install deb clean conformance e2e-kubelet runc-userns

all: build

## deps: install the Debian packages namespace pods need (root; skips what is installed)
deps:
	@$(call apt_install,$(DEB_PACKAGES))
	@command -v $(GO) >/dev/null || { echo "Go is needed (1.21 or newer fetches the toolchain go.mod asks for)"; exit 1; }

## deps-vm: what vm handlers add: QEMU and virtiofsd, and Debian's guest kernel unpacked into
## GUEST_KERNEL_DIR (boot/vmlinuz-*, lib/modules/*) without installing it on the host (root)
deps-vm: deps
	@$(call apt_install,$(VM_PACKAGES))
	@if ls $(GUEST_KERNEL_DIR)/boot/vmlinuz-* $(GUEST_KERNEL_DIR)/lib/modules/*/modules.dep >/dev/null 2>&1; then exit 0; fi; \
	pkg=$$(apt-cache depends $(GUEST_KERNEL_PKG) 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -1); \
	[ -n "$$pkg" ] || { apt-get update -qq; pkg=$$(apt-cache depends $(GUEST_KERNEL_PKG) | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -1); }; \
	[ -n "$$pkg" ] || { echo "no kernel package behind $(GUEST_KERNEL_PKG)"; exit 1; }; \
	tmp=$$(mktemp -d); chmod 755 "$$tmp"; trap 'rm -rf "$$tmp"' EXIT; \
	echo "unpacking $$pkg into $(GUEST_KERNEL_DIR) (not installed on the host)"; \
	(cd "$$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$$pkg") && \
	mkdir -p $(GUEST_KERNEL_DIR) && dpkg-deb -x "$$tmp"/$${pkg}_*.deb "$$tmp/x" && \
	mkdir -p $(GUEST_KERNEL_DIR)/boot $(GUEST_KERNEL_DIR)/lib && \
	cp "$$tmp"/x/boot/vmlinuz-* $(GUEST_KERNEL_DIR)/boot/ && cp -a "$$tmp"/x/lib/modules $(GUEST_KERNEL_DIR)/lib/ && \
	for m in $(GUEST_KERNEL_DIR)/lib/modules/*; do depmod -b $(GUEST_KERNEL_DIR) "$$(basename "$$m")"; done

# The minimal guest kernel for microVM pods (make guest-kernel): Debian's kernel source (linux-source)
# configured by configs/guest-kernel.config merged onto tinyconfig, everything built in (no modules).
# Installed as GUEST_KERNEL_DIR/boot/vmlinux-cradle-<release> (an ELF with the PVH entry) beside its
# config-cradle-<release>; cradle prefers it to Debian's kernel, which stays the fallback.
GUEST_KERNEL_SRC      ?= linux-source-6.1
GUEST_KERNEL_FRAGMENT := configs/guest-kernel.config
GUEST_KERNEL_JOBS     ?= 2
GUEST_KERNEL_DEBS     := $(GUEST_KERNEL_SRC) gcc libc6-dev make flex bison bc libelf-dev xz-utils binutils

## guest-kernel: build the minimal microVM guest kernel into GUEST_KERNEL_DIR/boot (root; 26 minutes
## at nice 19 with GUEST_KERNEL_JOBS=2 on a busy 2-core host; skipped when built from this fragment and
## source). cradle prefers it once installed (its VMs have no ACPI: the fragment's header); not a
## prerequisite of make check.
guest-kernel:
	@$(call apt_install,$(GUEST_KERNEL_DEBS)); \
	id="fragment=$$(sha256sum <$(GUEST_KERNEL_FRAGMENT) | cut -d' ' -f1) source=$(GUEST_KERNEL_SRC)_$$(dpkg-query -W -f='$${Version}' $(GUEST_KERNEL_SRC))"; \
	stamp=$(GUEST_KERNEL_DIR)/boot/cradle-kernel.id; \
	if [ "$$(cat $$stamp 2>/dev/null)" = "$$id" ] && ls $(GUEST_KERNEL_DIR)/boot/vmlinux-cradle-* >/dev/null 2>&1; then \
		echo "guest-kernel: $$(ls $(GUEST_KERNEL_DIR)/boot/vmlinux-cradle-*) is built from this fragment and source"; exit 0; fi; \
	tmp=$$(mktemp -d /var/tmp/cradle-kernel.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	echo "guest-kernel: building ($$id) in $$tmp"; start=$$(date +%s); \
	tar -C "$$tmp" -xf /usr/src/$(GUEST_KERNEL_SRC).tar.xz && src=$$tmp/$(GUEST_KERNEL_SRC) && \
	nice -n 19 $(MAKE) -s -C "$$src" tinyconfig >/dev/null && \
	(cd "$$src" && scripts/kconfig/merge_config.sh -m .config $(CURDIR)/$(GUEST_KERNEL_FRAGMENT) >"$$tmp/merge.log" 2>&1) && \
	nice -n 19 $(MAKE) -s -C "$$src" olddefconfig && \
	bad=$$(sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=\(.*\)/\1=\2/p; s/^# \(CONFIG_[A-Z0-9_]*\) is not set/\1=/p' $(GUEST_KERNEL_FRAGMENT) | \
		while IFS== read -r k v; do [ "$$(sed -n "s/^$$k=//p" "$$src/.config")" = "$$v" ] || echo "$$k=$$v"; done) && \
	{ [ -z "$$bad" ] || { echo "guest-kernel: the configuration does not have (a dependency missing?):" $$bad; exit 1; }; } && \
	nice -n 19 $(MAKE) -C "$$src" -j$(GUEST_KERNEL_JOBS) vmlinux >"$$tmp/build.log" 2>&1 || { tail -30 "$$tmp/build.log"; exit 1; }; \
	rel=$$($(MAKE) -s -C "$$src" kernelrelease) && mkdir -p $(GUEST_KERNEL_DIR)/boot && \
	rm -f $(GUEST_KERNEL_DIR)/boot/vmlinux-cradle-* $(GUEST_KERNEL_DIR)/boot/config-cradle-* "$$stamp" && \
	strip -o $(GUEST_KERNEL_DIR)/boot/vmlinux-cradle-$$rel "$$src/vmlinux" && \
	install -m 0644 "$$src/.config" $(GUEST_KERNEL_DIR)/boot/config-cradle-$$rel && \
	echo "$$id" >"$$stamp" && \
	echo "guest-kernel: $(GUEST_KERNEL_DIR)/boot/vmlinux-cradle-$$rel ($$(stat -c %s $(GUEST_KERNEL_DIR)/boot/vmlinux-cradle-$$rel) bytes) in $$(( $$(date +%s) - start )) s"

# CRIU for CheckpointContainer where the host's is older than 4.2 or fails `criu check`:
# Debian 12's 3.17 cannot dump on kernels from 6.13 on (split [vvar]), and 3.17 and 4.1.1
# pass `criu check` on some kernels yet hang in the parasite on `runc checkpoint` (seen on
# 6.18). Debian's source, sha256-pinned, built on this host (Debian's binary needs a newer libc).
CRIU_MIN        := 4.2
CRIU_VERSION    := 4.2.1
CRIU_SHA256     := 29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
CRIU_URL        := http://deb.debian.org/debian/pool/main/c/criu/criu_$(CRIU_VERSION).orig.tar.xz
CRIU_BUILD_DEBS := gcc libc6-dev make pkgconf curl xz-utils python3 libprotobuf-c-dev protobuf-c-compiler \
	libprotobuf-dev protobuf-compiler libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev \
	libnftables-dev uuid-dev

## criu: a CRIU of at least $(CRIU_MIN) that passes `criu check` on this kernel: the host's if
## it is one, else CRIU $(CRIU_VERSION) built from Debian's source into $(PREFIX)/sbin (root; about 1 minute)
criu:
	@v=$$(criu --version 2>/dev/null | sed -n 's/^Version: //p'); \
	if [ -n "$$v" ] && [ "$$(printf '%s\n%s\n' "$(CRIU_MIN)" "$$v" | sort -V | head -1)" = "$(CRIU_MIN)" ] && criu check >/dev/null 2>&1; then \
		echo "criu: $$(command -v criu) ($$v) passes criu check"; exit 0; fi; \
	$(call apt_install,$(CRIU_BUILD_DEBS)); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "criu: building $(CRIU_VERSION) from $(CRIU_URL)"; \
	curl -fsS -m 300 -o "$$tmp/criu.tar.xz" "$(CRIU_URL)" && \
	echo "$(CRIU_SHA256)  $$tmp/criu.tar.xz" | sha256sum -c --quiet && \
	tar -C "$$tmp" -xf "$$tmp/criu.tar.xz" && \
	$(MAKE) -s -C "$$tmp/criu-$(CRIU_VERSION)" -j$$(nproc) criu >"$$tmp/build.log" 2>&1 || { tail -30 "$$tmp/build.log"; exit 1; }; \
	install -D -m 0755 "$$tmp/criu-$(CRIU_VERSION)/criu/criu" "$(DESTDIR)$(PREFIX)/sbin/criu" && \
	"$(DESTDIR)$(PREFIX)/sbin/criu" check && echo "criu: installed $(DESTDIR)$(PREFIX)/sbin/criu"

# apt_install: install the packages of $(1) that are missing.
define apt_install
missing=""; for p in $(1); do \
	dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
	echo "installing:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
fi
endef

## build: the static cradle binary in bin/, with the microVM guest agent (cmd/shim built with the
## guest tag: the agent without the daemon) inside it
GUEST_AGENT   := cmd/shim/guestagent/cradle-agent
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags "guest $(GO_TAGS)" -ldflags "$(LDFLAGS)" -o $(GUEST_AGENT) ./cmd/shim
	CGO_ENABLED=0 $(GO) build -trimpath -tags "$(GO_TAGS)" -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/shim

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
check: deps deps-vm runc-userns
	$(GO) vet ./...
	$(MAKE) build
	$(GO) test -count=1 -timeout 25m ./...

## kubelet: a real kubelet (k8s.io/kubernetes through the Go module proxy) in _output/tools/kubelet/kubelet
kubelet:
	ln -sf "$$(integration/kubelet/build-kubelet.sh _output/tools/kubelet $(or $(KUBELET_VERSION),v1.34.4) | tail -1)" _output/tools/kubelet/kubelet
	@echo "kubelet: _output/tools/kubelet/kubelet"

## e2e-kubelet: a real kubelet (k8s.io/kubernetes through the Go module proxy, cached in _output/tools/kubelet)
## runs static pods on bin/cradle in a private mount namespace; checks through kubelet's API and the CRI (root)
e2e-kubelet: deps build
	integration/kubelet/run.sh

## bench: benchmarks (figures, never pass/fail)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 5x ./pkg/...
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./integration

# bench-compare: cradle against containerd (CRI plugin + containerd-shim-runc-v2), built through the Go
# module proxy into _output/tools (cached by version). A developer's tool: not part of make check or CI.
CONTAINERD_VERSION ?= v2.4.2
CONTAINERD_DIR     ?= $(CURDIR)/_output/tools/containerd-$(CONTAINERD_VERSION)
BENCH_N            ?= 20
BENCH_ROUNDS       ?= 3
BENCH_ARGS         ?=

## bench-compare: cradle on its default handler vs containerd $(CONTAINERD_VERSION) on runc, same busybox
## image from a loopback registry, BENCH_N pods one after another and by 5 clients, median of BENCH_ROUNDS
## rounds (root); BENCH_ARGS="-cradle-oci /usr/bin/runc" runs cradle on runc too
bench-compare: deps build
	@if [ ! -x $(CONTAINERD_DIR)/containerd ] || [ ! -x $(CONTAINERD_DIR)/containerd-shim-runc-v2 ]; then \
		mkdir -p $(CONTAINERD_DIR) && echo "building containerd $(CONTAINERD_VERSION) into $(CONTAINERD_DIR)" && \
		GOFLAGS=-mod=mod GOBIN=$(CONTAINERD_DIR) $(GO) install -p 1 -trimpath -tags "no_btrfs no_devmapper no_zfs" \
			github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD_VERSION) \
			github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD_VERSION); \
	fi
	$(GO) build -o _output/tools/benchcompare ./integration/benchcompare
	flock /tmp/cradle-integration.lock _output/tools/benchcompare -cradle $(BIN) -containerd $(CONTAINERD_DIR)/containerd \
		-kit $(CONFORMANCE_KIT) -n $(BENCH_N) -rounds $(BENCH_ROUNDS) $(BENCH_ARGS)

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

# The package's version: Debian's rules want a leading digit (git describe gives a commit here).
DEB_VERSION   ?= 0.1.0+git$(COMMIT)
DEB_ARCH      ?= $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB           ?= bin/cradle_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_STAGE     := bin/deb

## deb: a Debian package built with dpkg-deb: the binary, the systemd unit and the default
## configuration as a conffile (an operator's edits survive upgrades); `dpkg -i` installs it
deb: build
	rm -rf $(DEB_STAGE)
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DEB_STAGE) PREFIX=/usr UNITDIR=/lib/systemd/system
	install -d -m 0755 $(DEB_STAGE)/DEBIAN
	printf '%s\n' \
		'Package: cradle' \
		'Version: $(DEB_VERSION)' \
		'Architecture: $(DEB_ARCH)' \
		'Maintainer: cradle developers <cradle@localhost>' \
		'Section: admin' \
		'Priority: optional' \
		'Depends: runc | crun, conmon, iproute2, nftables, ca-certificates' \
		'Recommends: crun, containernetworking-plugins' \
		'Suggests: qemu-system-x86, qemu-system-common' \
		'Installed-Size: '"$$(du -sk $(DEB_STAGE) | cut -f1)" \
		'Description: secure-runtime node daemon for Kubernetes (CRI)' \
		' cradle is a Container Runtime Interface server for kubelet: namespace pods' \
		' through runc or crun under conmon, microVM pods through QEMU, images pulled' \
		' and unpacked with containerd libraries, in one static binary.' > $(DEB_STAGE)/DEBIAN/control
	echo /etc/cradle/cradle.toml > $(DEB_STAGE)/DEBIAN/conffiles
	dpkg-deb --root-owner-group --build $(DEB_STAGE) $(DEB)
	rm -rf $(DEB_STAGE)

clean:
	rm -rf bin $(GUEST_AGENT)

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
