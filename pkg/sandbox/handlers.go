// Package sandbox is cradle's pod engine: runtime handlers, pod and
// container state machines, checkpoints and recovery, shared by every
// sandbox kind behind one Backend seam.
package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"time"

	"github.com/cradle-runtime/cradle/pkg/config"
)

// Handler is a configured RuntimeClass handler and what probing it found.
type Handler struct {
	Name   string
	Kind   string
	Binary string // resolved path; "" when the binary is missing
	// Version is the first line of `<binary> --version`.
	Version  string
	Features HandlerFeatures
	// Problem says why the handler cannot run pods on this node ("" if it can).
	Problem string
	// Accel is how a vm handler's VMs run (kvm or tcg) and why; set by
	// the VM wiring, "" for other kinds.
	Accel string
}

// HandlerFeatures are the per-handler features the CRI reports to kubelet.
type HandlerFeatures struct {
	RecursiveReadOnlyMounts bool
	// ReadOnlyTrees: the OCI runtime has no "rro" mount option, so the
	// daemon hands it each recursive read-only mount as a tree it made
	// read-only itself (mount_setattr(2)), which the runtime bind-mounts.
	ReadOnlyTrees  bool
	UserNamespaces bool
}

// ociFeatures is the part of `runc features` / `crun features` output
// (the OCI runtime-spec features document) that cradle reads.
type ociFeatures struct {
	MountOptions []string `json:"mountOptions"`
	Linux        *struct {
		Namespaces      []string `json:"namespaces"`
		MountExtensions *struct {
			IDMap *struct {
				Enabled *bool `json:"enabled"`
			} `json:"idmap"`
		} `json:"mountExtensions"`
	} `json:"linux"`
}

// ProbeHandlers resolves each configured handler's binary and asks it for
// its features. A missing or broken binary is reported in Problem, never
// assumed away. Handlers are returned sorted by name.
func ProbeHandlers(ctx context.Context, rc config.Runtime) []Handler {
	names := make([]string, 0, len(rc.Handlers))
	for n := range rc.Handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Handler, 0, len(names))
	for _, n := range names {
		hc := rc.Handlers[n]
		h := Handler{Name: n, Kind: hc.Kind}
		if hc.Kind == config.KindVM {
			// The VMM only: the guest kernel and initramfs are prepared,
			// and their problems recorded, by the VM wiring (cmd/shim).
			probeVMM(ctx, &h, hc.Binary)
			out = append(out, h)
			continue
		}
		probeOCI(ctx, &h, hc.Binary)
		out = append(out, h)
	}
	return out
}

func probeVMM(ctx context.Context, h *Handler, binary string) {
	findBinary(ctx, h, binary, "VMM %q not found (apt-get install qemu-system-x86): %v")
}

// findBinary resolves binary into h.Binary and asks it for its version; a
// missing binary is h's Problem (problem formats the binary and the error).
func findBinary(ctx context.Context, h *Handler, binary, problem string) bool {
	path, err := exec.LookPath(binary)
	if err != nil {
		h.Problem = fmt.Sprintf(problem, binary, err)
		return false
	}
	h.Binary = path
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
		h.Version = firstLine(string(out))
	}
	return true
}

func probeOCI(ctx context.Context, h *Handler, binary string) {
	if !findBinary(ctx, h, binary, "OCI runtime %q not found: %v") {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var f ociFeatures
	// Runtimes older than the features command (crun 1.8) have no
	// optional features of their own.
	if out, err := exec.CommandContext(ctx, h.Binary, "features").Output(); err == nil {
		if err := json.Unmarshal(out, &f); err != nil {
			h.Problem = fmt.Sprintf("%s features: %v", h.Binary, err)
			return
		}
	}
	// Recursive read-only mounts need mount_setattr(2) (Linux 5.12); a
	// runtime without "rro" gets trees the daemon made read-only.
	if mountSetattrWorks() {
		h.Features.RecursiveReadOnlyMounts = true
		h.Features.ReadOnlyTrees = !slices.Contains(f.MountOptions, "rro")
	}
	if f.Linux != nil && slices.Contains(f.Linux.Namespaces, "user") && f.Linux.MountExtensions != nil &&
		f.Linux.MountExtensions.IDMap != nil && f.Linux.MountExtensions.IDMap.Enabled != nil {
		h.Features.UserNamespaces = *f.Linux.MountExtensions.IDMap.Enabled
	}
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
