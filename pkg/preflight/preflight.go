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

	"github.com/cradle-runtime/cradle/pkg/config"
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
	Handlers     map[string]string // handler name → runtime binary (OCI runtime, or VMM)
	VMHandlers   map[string]string // vm handler name → its virtiofsd
	Conmon       string            // runtime.conmon
	CgroupRoot   string            // runtime.cgroup_root: where pod cgroups go
	Network      config.Network    // the pod network's mode and CNI directories
	Socket       string            // the CRI socket
	SocketGroup  string            // its group ("" keeps root's)
	QEMU         string            // VMM binary for microVM pods
	GuestKernels []string          // candidate guest kernel paths (globs)
	ProcRoot     string            // "/proc"
	SysRoot      string            // "/sys"
	DevKVM       string            // "/dev/kvm"
	CRIU         string            // the CRIU runc and crun run for CheckpointContainer
}

// FactsOf are the facts of a standard node running with cfg.
func FactsOf(cfg config.Config) Facts {
	f := Facts{
		Root:         cfg.Root,
		Handlers:     map[string]string{},
		VMHandlers:   map[string]string{},
		Conmon:       cfg.Runtime.Conmon,
		CgroupRoot:   cfg.Runtime.CgroupRoot,
		Network:      cfg.Network,
		Socket:       cfg.GRPC.Socket,
		SocketGroup:  cfg.GRPC.SocketGroup,
		QEMU:         "qemu-system-x86_64",
		GuestKernels: []string{"/var/lib/cradle/guest/boot/vmlinuz-*", "/boot/vmlinuz-*", "/boot/vmlinux-*"},
		ProcRoot:     "/proc",
		SysRoot:      "/sys",
		DevKVM:       "/dev/kvm",
		CRIU:         "criu",
	}
	for name, h := range cfg.Runtime.Handlers {
		f.Handlers[name] = h.Binary
		if h.Kind == config.KindVM && h.VM != nil {
			f.VMHandlers[name] = h.VM.Virtiofsd
		}
	}
	return f
}

// Run performs every check.
func Run(ctx context.Context, f Facts) []Result {
	var out []Result
	for _, check := range []func(context.Context, Facts) []Result{
		checkKernel, checkCgroups, checkHugetlb, checkRuntimes, checkConmon, checkCRIU, checkMicroVM, checkVirtiofsd,
		checkNetwork, checkCNI, checkSocket, checkDisk, checkPrivileges,
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
