#!/usr/bin/env bash
# make conformance: the cri-tools validation suite (critest) against cradle,
# once per runtime handler, with the test images served offline.
#
#   CONFORMANCE_KIT=DIR run.sh
#
# 1. builds critest and crictl (build-critools.sh, cached under _output/tools/critools);
# 2. builds the test images and pushes them to 127.0.0.1:5000 with the kit's build-images.sh
#    (a registry that already answers there is reused; one this script starts is stopped at the end);
# 3. under /tmp/cradle-integration.lock, starts bin/cradle with a root, state, socket, bridge and
#    subnet of its own in a private mount namespace whose "/" is rshared (the mount-propagation
#    specs need it), and runs critest in the same namespace against each handler;
# 4. stops the daemon, checks for leaks (pods, mounts, processes, veths, cgroups) and removes the
#    System V shm segments critest's host-IPC specs leave behind.
#
# It prints passed/failed/skipped per handler and fails on any failed spec. One spec is skipped
# by name: "public image with digest" pulls a fixed upstream manifest-list digest that no local
# registry can serve. Environment: CONFORMANCE_KIT (required), CONFORMANCE_HANDLERS ("runc crun"),
# CRITOOLS_VERSION (v1.37.0); for debugging, CONFORMANCE_FOCUS (a ginkgo focus regexp) and
# CONFORMANCE_ARGS (more critest flags, e.g. --ginkgo.repeat=20).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$repo/integration/conformance
kit=${CONFORMANCE_KIT:-}
handlers=${CONFORMANCE_HANDLERS:-runc crun runc-userns}
# runc-userns: a runc new enough for pod user namespaces (make runc-userns); only critest's
# user-namespace specs run against it (the rest is runc's, covered by the runc pass).
runc_userns=$repo/_output/tools/runc-userns/runc
version=${CRITOOLS_VERSION:-v1.37.0}
tools=$repo/_output/tools/critools
out=$repo/_output/conformance
cradle=$repo/bin/cradle
registry=127.0.0.1:5000
bridge=crconf0
subnet=10.232.0.0/24
cgroup_root=/cradle-conformance
lock=/tmp/cradle-integration.lock
digest_spec='public image with digest'

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'conformance: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (mounts, namespaces, cgroups)"
[[ -n $kit && -x $kit/build-images.sh && -d $kit/mirrors ]] ||
	die "conformance kit not found at '${kit}' (build-images.sh and mirrors/): set CONFORMANCE_KIT"
[[ -x $cradle ]] || die "$cradle missing: run make build"
for c in unshare nsenter flock ipcs ipcrm ip nft; do command -v $c >/dev/null || die "$c is needed"; done

"$here/build-critools.sh" "$tools" "$version"

tmp='' nspid='' daemon='' started_registry=''
# shellcheck source-path=SCRIPTDIR source=cleanup.sh
source "$here/cleanup.sh"
trap 'rc=$?; cleanup || rc=1; exit $rc' EXIT
trap 'exit 130' INT TERM

mkdir -p "$out"
registry_up() { (exec 3<>"/dev/tcp/${registry%:*}/${registry##*:}") 2>/dev/null; }
registry_up || started_registry=1
log "test images: $kit/build-images.sh -r $registry"
"$here/../test-images.sh" "$kit" "$registry" "$out/images" "$out/images.log" ||
	die "build-images.sh failed (log: $out/images.log)"
log "$(wc -l <"$out/images/images-pushed.txt") images on $registry"

exec 9>>"$lock"
log "waiting for $lock"
flock 9

shm_before=$(ipcs -m | awk '$1 ~ /^0x/ { print $2 }')
tmp=$(mktemp -d /tmp/cradle-conformance.XXXXXX)
# Traversable (not listable) by others, as /var/lib and /run are: a user-namespace pod's mapped root
# must reach its rootfs under the daemon's state directory.
chmod 0711 "$tmp"

# The private mount namespace: its "/" is rshared, the host's stays as it is.
unshare -m --propagation unchanged sleep infinity 9>&- &
nspid=$!
for _ in $(seq 1 50); do
	[[ $(readlink "/proc/$nspid/ns/mnt") != "$(readlink /proc/self/ns/mnt)" ]] && break
	sleep 0.1
done
nsenter -m -t "$nspid" -- mount --make-rshared /
inns() { nsenter -m -t "$nspid" -- "$@"; }

mkdir -p "$tmp/certs.d" "$tmp/logs"
cp -r "$kit/mirrors/." "$tmp/certs.d/"
sock=$tmp/run/cradle.sock
nri_sock=$tmp/run/nri.sock # critest's NRI specs connect their plugin stubs here
cat >"$tmp/cradle.toml" <<EOF
root = '$tmp/root'
state = '$tmp/run'
[grpc]
socket = '$sock'
[metrics]
address = ''
[images]
registry_config_dir = '$tmp/certs.d'
sandbox_image = 'registry.k8s.io/pause:3.10'
preload_dir = '$tmp/preload'
[runtime]
default_handler = 'runc'
cgroup_root = '$cgroup_root'
[runtime.handlers.runc]
kind = 'oci'
binary = 'runc'
[runtime.handlers.crun]
kind = 'oci'
binary = 'crun'
[runtime.handlers.runc-userns]
kind = 'oci'
binary = '$runc_userns'
[network]
bridge = '$bridge'
subnet = '$subnet'
[nri]
enable = true
socket_path = '$nri_sock'
plugin_path = ''
# critest's sync specs hold a plugin's Synchronize open for 2 s, NRI's
# default request timeout: a longer one keeps that plugin connected.
request_timeout = '10s'
EOF

log "starting cradle ($tmp)"
# nsenter execs cradle: $! is the daemon's PID.
nsenter -m -t "$nspid" -- "$cradle" serve --config "$tmp/cradle.toml" >"$tmp/logs/cradle.log" 2>&1 9>&- &
daemon=$!
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 10\n' "$sock" "$sock" >"$tmp/crictl.yaml"
crictl=("$tools/crictl" --config "$tmp/crictl.yaml")
for _ in $(seq 1 100); do
	[[ -S $sock ]] && inns "${crictl[@]}" version >/dev/null 2>&1 && break
	kill -0 "$daemon" 2>/dev/null || { tail -20 "$tmp/logs/cradle.log"; die "cradle exited"; }
	sleep 0.3
done
inns "${crictl[@]}" version >/dev/null || die "cradle does not answer on $sock"

log "skipped by name: \"$digest_spec\": it pulls a fixed upstream manifest-list digest that no offline registry can serve"
focus=()
[[ -n ${CONFORMANCE_FOCUS:-} ]] && focus=(--ginkgo.focus "$CONFORMANCE_FOCUS")
# shellcheck disable=SC2206 # CONFORMANCE_ARGS: more critest flags, split on spaces (e.g. --ginkgo.repeat=20)
focus+=(${CONFORMANCE_ARGS:-})
# skip_reasons prints the skipped specs of a junit report counted by reason.
skip_reasons() {
	grep -o '<skipped message="[^"]*"' "$1" 2>/dev/null | sed 's/^<skipped message="//; s/"$//; s/^skipped - //' |
		sed 's/^skipped$/(benchmark, or skipped by name)/; s/&#34;/"/g' | sort | uniq -c | sort -rn | sed 's/^ */     skipped /' >&2
}
failed=0 summary=()
for h in $handlers; do
	log "critest $version, handler $h"
	start=$SECONDS
	rc=0
	hfocus=("${focus[@]}")
	[[ $h == runc-userns && -z ${CONFORMANCE_FOCUS:-} ]] && hfocus+=(--ginkgo.focus UserNamespaces)
	inns "$tools/critest" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" \
		--runtime-handler "$h" --nri-socket "$nri_sock" --ginkgo.skip "$digest_spec" "${hfocus[@]}" --ginkgo.no-color \
		--ginkgo.junit-report "$tmp/logs/critest-$h.xml" >"$tmp/logs/critest-$h.log" 2>&1 || rc=$?
	line=$(grep -Eo '[0-9]+ Passed \| [0-9]+ Failed \| [0-9]+ Pending \| [0-9]+ Skipped' "$tmp/logs/critest-$h.log" | tail -1) || true
	[[ -n $line ]] || { tail -30 "$tmp/logs/critest-$h.log"; line="no summary (critest exit $rc)"; }
	passed='?' nfail='?' skipped='?'
	# shellcheck disable=SC2086
	[[ $line == *Passed* ]] && set -- ${line//|/} && passed=$1 nfail=$3 skipped=$7
	summary+=("$h: passed $passed, failed $nfail, skipped $skipped ($((SECONDS - start)) s)")
	log "${summary[-1]}"
	skip_reasons "$tmp/logs/critest-$h.xml"
	if [[ $h == runc-userns && -z ${CONFORMANCE_FOCUS:-} && $passed != 6 ]]; then
		log "runc-userns: want the 6 user-namespace specs passed, got $passed (does Status advertise user_namespaces?)"
		failed=1
	fi
	if [[ $rc != 0 || $nfail != 0 ]]; then
		failed=1
		sed -n '/^Summarizing/,$p' "$tmp/logs/critest-$h.log" | grep -E '^\s*\[(FAIL|PANICKED|TIMEDOUT)\]' >&2 || true
	fi
done

printf '\ncritest %s on cradle (logs: %s)\n' "$version" "$out/logs"
printf '  %s\n' "${summary[@]}"
[[ $failed == 0 ]] || die "failed specs (see above)"
