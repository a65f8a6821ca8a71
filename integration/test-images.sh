#!/usr/bin/env bash
# integration/test-images.sh KIT REGISTRY WORKDIR LOG: serves the test images on REGISTRY with the
# conformance kit's build-images.sh (cached in WORKDIR, its output in LOG), tried up to 3 times.
# The kit checks its busybox with `busybox --list | grep -qx sh` under pipefail: busybox writes the
# list applet by applet, and when grep has already exited it dies of SIGPIPE, which fails the check
# on a loaded machine although nothing is wrong. A failure that repeats is real.
set -euo pipefail
[ $# = 4 ] || { echo "usage: $0 KIT REGISTRY WORKDIR LOG" >&2; exit 2; }
kit=$1 registry=$2 workdir=$3 log=$4
: >"$log"
for attempt in 1 2 3; do
	echo "== build-images.sh, attempt $attempt" >>"$log"
	if CONFORMANCE_WORKDIR='' "$kit/build-images.sh" -r "$registry" -w "$workdir" >>"$log" 2>&1; then
		exit 0
	fi
	echo "== build-images.sh failed (attempt $attempt)" >>"$log"
done
tail -30 "$log" >&2
exit 1
