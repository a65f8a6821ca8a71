# shellcheck shell=bash disable=SC2154
# Sourced by run.sh: cleanup stops what run.sh started and checks that the
# suite left nothing behind. It uses run.sh's variables (tmp, nspid, daemon,
# crictl, bridge, cgroup_root, shm_before, out, started_registry) and returns 1 on a leak.

cleanup() {
	set +e
	local leaks=() ids p m d
	if [[ -n $daemon ]] && kill -0 "$daemon" 2>/dev/null; then
		ids=$(inns "${crictl[@]}" pods -q 2>/dev/null)
		if [[ -n $ids ]]; then
			leaks+=("pods left in cradle: ${ids//$'\n'/ }")
			for p in $ids; do inns "${crictl[@]}" stopp "$p" >/dev/null; inns "${crictl[@]}" rmp -f "$p" >/dev/null; done
		fi
		kill -TERM "$daemon"
		for _ in $(seq 1 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.3; done
		kill -0 "$daemon" 2>/dev/null && { leaks+=("cradle ignored SIGTERM for 30 s"); kill -KILL "$daemon"; }
		wait "$daemon" 2>/dev/null
	fi
	if [[ -n $nspid ]]; then
		m=$(awk -v t="$tmp" 'index($5, t) == 1 { print $5 }' "/proc/$nspid/mountinfo" 2>/dev/null)
		[[ -n $m ]] && leaks+=("mounts left: ${m//$'\n'/ }")
		kill "$nspid"
		wait "$nspid" 2>/dev/null
	fi
	for p in /proc/[0-9]*; do
		m=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")
		if [[ -n $tmp && $m == *"$tmp/"* ]]; then
			leaks+=("process left: ${p#/proc/} ${m:0:120}")
			kill -KILL "${p#/proc/}"
		fi
	done
	m=$(ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{ print $2 }')
	[[ -n $m ]] && leaks+=("veths left on $bridge: ${m//$'\n'/ }")
	ip link del "$bridge" 2>/dev/null
	nft delete table inet "cradle-$bridge" 2>/dev/null
	for d in /sys/fs/cgroup/*"$cgroup_root" /sys/fs/cgroup"$cgroup_root"; do
		[[ -d $d ]] || continue
		m=$(find "$d" -mindepth 1 -type d)
		[[ -n $m ]] && leaks+=("cgroups left: ${m//$'\n'/ }")
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	# critest's host-IPC specs make 1 MiB segments with ipcmk and never remove them.
	[[ -n $tmp ]] && for p in $(ipcs -m | awk '$1 ~ /^0x/ && $5 == 1048576 { print $2 }'); do
		grep -qx "$p" <<<"$shm_before" && continue
		ipcrm -m "$p" && log "removed shm segment $p (left by critest's host-IPC specs)"
	done
	if [[ -n $tmp && -d $tmp ]]; then
		rm -rf "$out/logs" && mkdir -p "$out/logs" && cp -r "$tmp/logs/." "$out/logs/"
		if grep -qF "$tmp" /proc/self/mountinfo; then
			leaks+=("host mounts under $tmp: kept")
		else
			rm -rf "$tmp"
		fi
	fi
	flock -u 9 2>/dev/null
	p=$(cat "$out/images/registry/registry.pid" 2>/dev/null)
	if [[ -n $started_registry && -n $p ]] && grep -qF "$out/images/registry" "/proc/$p/cmdline" 2>/dev/null; then
		kill "$p" && log "stopped the registry this run started (PID $p)"
	fi
	if ((${#leaks[@]})); then
		printf 'conformance: leak: %s\n' "${leaks[@]}" >&2
		return 1
	fi
	log "no leaks (pods, mounts, processes, veths, cgroups)"
}
