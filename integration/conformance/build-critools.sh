#!/usr/bin/env bash
# Builds critest and crictl from sigs.k8s.io/cri-tools through the Go module
# proxy, in a scratch module written here at build time (nothing of cri-tools
# is kept in the repository). The binaries are cached: a second run with the
# same version does not rebuild.
#
#   build-critools.sh OUTDIR [VERSION]
set -euo pipefail

out=${1:?usage: build-critools.sh OUTDIR [VERSION]}
version=${2:-v1.37.0}
go=${GO:-go}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp="$out/.version"

if [[ -x $out/critest && -x $out/crictl && "$(cat "$stamp" 2>/dev/null)" == "$version" ]]; then
	echo "critools: critest and crictl $version cached in $out"
	exit 0
fi

echo "critools: building critest and crictl $version in $out (about two minutes)"
mod="$out/module"
rm -rf "$mod"
mkdir -p "$mod"
cd "$mod"
printf 'module critoolsbuild\n\ngo 1.25\n' > go.mod
# critest is a Go test binary: its test dependencies need go get -t.
"$go" get -t "sigs.k8s.io/cri-tools/cmd/critest@$version"
"$go" get "sigs.k8s.io/cri-tools/cmd/crictl@$version"
CGO_ENABLED=0 "$go" test -c -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$version" -o "$out/critest.new" sigs.k8s.io/cri-tools/cmd/critest
CGO_ENABLED=0 "$go" build -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$version" \
	-o "$out/crictl.new" sigs.k8s.io/cri-tools/cmd/crictl
mv "$out/critest.new" "$out/critest"
mv "$out/crictl.new" "$out/crictl"
echo "$version" > "$stamp"
"$out/crictl" --version
