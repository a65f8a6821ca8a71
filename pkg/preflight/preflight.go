// Package preflight checks whether this node can run cradle: kernel
// features, the cgroup layout, OCI runtimes, microVM prerequisites,
// networking tools and disk. Each check reports OK, WARN or FAIL with the
// fix; `cradle check` prints them and fails when any check fails.
package preflight

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Status is a check's verdict.
type Status int

// Verdicts, in rising severity.
const (
	OK Status = iota
	Warn
	Fail
)

func (s Status) String() string {
	return [...]string{"OK", "WARN", "FAIL"}[s]
}

// Result is one line of the report.
type Result struct {
	Name   string
	Status Status
	Detail string
	Fix    string // what to do about a WARN or FAIL
}

// Facts are what the checks look at beyond the running kernel: the paths
// and binaries the configuration names. Tests point them at fixtures.
type Facts struct {
	Root         string            // cradle's state root (disk checks)
	Handlers     map[string]string // handler name → OCI runtime binary
	QEMU         string            // VMM binary for microVM pods
	GuestKernels []string          // candidate guest kernel paths (globs)
	ProcRoot     string            // "/proc"
	SysRoot      string            // "/sys"
	DevKVM       string            // "/dev/kvm"
}

// DefaultFacts are the facts of a standard node.
func DefaultFacts(root string, handlers map[string]string) Facts {
	return Facts{
		Root:         root,
		Handlers:     handlers,
		QEMU:         "qemu-system-x86_64",
		GuestKernels: []string{"/boot/vmlinuz-*", "/boot/vmlinux-*"},
		ProcRoot:     "/proc",
		SysRoot:      "/sys",
		DevKVM:       "/dev/kvm",
	}
}

// Run performs every check.
func Run(ctx context.Context, f Facts) []Result {
	var out []Result
	for _, check := range []func(context.Context, Facts) []Result{
		checkKernel, checkCgroups, checkRuntimes, checkMicroVM, checkNetwork, checkDisk, checkPrivileges,
	} {
		out = append(out, check(ctx, f)...)
	}
	return out
}

// Write prints results one per line and reports whether any failed.
func Write(w io.Writer, results []Result) (failed bool) {
	for _, r := range results {
		line := fmt.Sprintf("%-4s  %-22s %s", r.Status, r.Name, r.Detail)
		if r.Status != OK && r.Fix != "" {
			line += "\n      fix: " + r.Fix
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		failed = failed || r.Status == Fail
	}
	return failed
}

func ok(name, detail string) Result { return Result{Name: name, Status: OK, Detail: detail} }

func warn(name, detail, fix string) Result {
	return Result{Name: name, Status: Warn, Detail: detail, Fix: fix}
}

func fail(name, detail, fix string) Result {
	return Result{Name: name, Status: Fail, Detail: detail, Fix: fix}
}
