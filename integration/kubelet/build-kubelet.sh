#!/usr/bin/env bash
# Builds a real kubelet from k8s.io/kubernetes through the Go module proxy, for `make e2e-kubelet`.
# Nothing of kubernetes is committed: a scratch build module is written under OUT (a .gitignored
# cache dir) with one `replace` line per staging module (k8s.io/api, k8s.io/client-go, ...) pointing
# at the v0.X.Y release that matches kubernetes v1.X.Y, because kubernetes' own go.mod points them at
# ./staging, which a module consumer cannot use. The binary is cached: a second run skips the build.
#
# usage: build-kubelet.sh OUT_DIR [VERSION]      prints the binary's path on the last line
set -euo pipefail
out=${1:?usage: build-kubelet.sh OUT_DIR [VERSION]}
version=${2:-v1.34.4}
staging=v0.${version#v1.}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin="$out/kubelet-$version"
if [ -x "$bin" ]; then
	echo "kubelet $version: cached" >&2
	echo "$bin"
	exit 0
fi
mod="$out/build-$version"
rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
printf 'module kubeletbuild\n\ngo 1.24\n' >go.mod
start=$(date +%s)
# kubernetes' go.mod lists its staging modules as `k8s.io/x => ./staging/src/k8s.io/x`.
gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$gomod" ] || { echo "no go.mod for k8s.io/kubernetes@$version" >&2; exit 1; }
grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u >staging.txt
[ -s staging.txt ] || { echo "no staging replace lines in $gomod" >&2; exit 1; }
while read -r m; do
	go mod edit -replace "$m=$m@$staging"
done <staging.txt
go mod edit -require "k8s.io/kubernetes@$version"
# -mod=mod lets `go build` resolve the remaining requirements once; -buildvcs=false: the scratch module
# sits inside cradle's checkout, whose commit is not kubelet's. Modest parallelism (2 cores).
export GOFLAGS="-mod=mod -buildvcs=false"
go get "k8s.io/kubernetes/cmd/kubelet@$version" >&2
CGO_ENABLED=0 go build -p "${KUBELET_BUILD_PARALLEL:-2}" -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version" \
	-o "$bin.tmp" k8s.io/kubernetes/cmd/kubelet
mv "$bin.tmp" "$bin"
echo "kubelet $version: built in $(($(date +%s) - start)) s ($(wc -l <staging.txt) staging modules replaced)" >&2
echo "$bin"
