#!/usr/bin/env bash
# make e2e-kubelet: builds (or reuses) a real kubelet and runs TestKubelet against bin/cradle,
# inside a private mount namespace whose "/" is rshared, under the integration lock.
# Environment: KUBELET_VERSION (v1.34.4), CRADLE_E2E_REGISTRY (127.0.0.1:5000), CONFORMANCE_KIT
# (../shared/conformance, else /work/shared/conformance: serves the test images when the registry lacks them), CRADLE_E2E_KEEP=1
# keeps the test's directory (logs of cradle and kubelet).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=_output/tools/kubelet
version=${KUBELET_VERSION:-v1.34.4}
registry=${CRADLE_E2E_REGISTRY:-127.0.0.1:5000}
kit=${CONFORMANCE_KIT:-}
if [ -z "$kit" ]; then
	for kit in ../shared/conformance /work/shared/conformance; do [ -d "$kit" ] && break; done
fi

t0=$(date +%s)
kubelet=$(integration/kubelet/build-kubelet.sh "$out" "$version" | tail -1)
echo "== kubelet $version ready in $(($(date +%s) - t0)) s: $kubelet"

# The images the pods use, from the conformance registry (registry.k8s.io is mirrored to it).
manifest_ok() { # REPO:TAG → the registry has its manifest (plain HTTP, no curl needed)
	local st
	exec 3<>"/dev/tcp/${registry%:*}/${registry##*:}" 2>/dev/null || return 1
	printf 'HEAD /v2/%s/manifests/%s HTTP/1.0\r\nHost: %s\r\nAccept: %s\r\n\r\n' "${1%%:*}" "${1##*:}" "$registry" \
		'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' >&3
	read -r st <&3 || true
	exec 3<&-
	[[ $st == *" 200 "* ]]
}
have_images() { manifest_ok e2e-test-images/busybox:1.29-2 && manifest_ok e2e-test-images/nginx:1.14-2 && manifest_ok pause:3.10; }
if ! have_images; then
	[ -x "$kit/build-images.sh" ] || { echo "no test images on $registry and no conformance kit at $kit" >&2; exit 1; }
	echo "== serving the test images on $registry with $kit/build-images.sh (log: $out/images.log)"
	rm -rf "$out/images"
	integration/test-images.sh "$kit" "$registry" "$PWD/$out/images" "$out/images.log"
	if [ -f "$out/images/registry/registry.pid" ]; then # a registry this script started: stopped at the end
		pid=$(cat "$out/images/registry/registry.pid")
		trap 'kill "$pid" 2>/dev/null || true' EXIT # replaced by restore below, which stops it too
	fi
	have_images || { echo "the test images are still missing on $registry" >&2; exit 1; }
fi

go test -c -o "$out/e2e.test" ./integration/kubelet
export CRADLE_E2E_KUBELET=$kubelet CRADLE_E2E_CRADLE=${CRADLE_E2E_CRADLE:-$PWD/bin/cradle} CRADLE_E2E_REGISTRY=$registry

# kubelet sets kernel tunables (vm.overcommit_memory, kernel.panic, ...) that no namespace holds:
# they are put back as they were when it is done.
tunables=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
saved=()
for k in "${tunables[@]}"; do saved+=("$(cat "/proc/sys/$k")"); done
restore() {
	local i
	for i in "${!tunables[@]}"; do echo "${saved[$i]}" >"/proc/sys/${tunables[$i]}" || true; done
	[ -z "${pid:-}" ] || kill "$pid" 2>/dev/null || true
}
trap restore EXIT

echo "== waiting for /tmp/cradle-integration.lock"
log=$PWD/$out/e2e.log
cd integration/kubelet
# The private mount namespace: "/" rshared (as systemd makes it), and tmpfs on /var/log and /var/lib,
# where kubelet writes /var/log/containers and /var/lib/kubelet/device-plugins whatever its
# configuration says.
flock /tmp/cradle-integration.lock unshare -m --propagation unchanged -- \
	sh -c 'mount --make-rshared / && mount -t tmpfs -o mode=0755 cradle-e2e-var /var/log &&
		mount -t tmpfs -o mode=0755 cradle-e2e-var /var/lib && exec "$@"' sh \
	"../../$out/e2e.test" -test.v -test.count=1 -test.timeout 25m -test.run '^TestKubelet$' 2>&1 | tee "$log" && st=0 || st=$?
if [ "$st" -ne 0 ]; then
	# CI keeps the end of the output: repeat there what each failed test printed (its first 60 lines;
	# the subtests last).
	echo "== what the failed tests printed (all of it: $log)"
	awk '/^=== (RUN|PAUSE|CONT|NAME) / { cur = $3; next }
		/^ *--- (FAIL|PASS|SKIP): / { if ($2 == "FAIL:") failed[$3] = 1; next }
		cur != "" && n[cur] < 60 { buf[cur] = buf[cur] $0 "\n"; n[cur]++ }
		END { for (k in failed) if (k !~ /\//) printf "--- FAIL %s\n%s", k, buf[k] # subtests last
			for (k in failed) if (k ~ /\//) printf "--- FAIL %s\n%s", k, buf[k] }' "$log"
fi
exit "$st"
