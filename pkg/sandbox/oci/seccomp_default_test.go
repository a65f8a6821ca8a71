package oci

import (
	goruntime "runtime"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// allowed reports whether the profile allows name without conditions.
func allowed(p *specs.LinuxSeccomp, name string) bool {
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}

func conditional(p *specs.LinuxSeccomp, name string) []specs.LinuxSyscall {
	var out []specs.LinuxSyscall
	for _, s := range p.Syscalls {
		if slices.Contains(s.Names, name) && (len(s.Args) > 0 || s.Action != specs.ActAllow) {
			out = append(out, s)
		}
	}
	return out
}

func TestDefaultSeccompProfileBlocks(t *testing.T) {
	p := DefaultSeccompProfile(defaultCapabilities())
	if p.DefaultAction != specs.ActErrno {
		t.Errorf("default action = %q, want %q", p.DefaultAction, specs.ActErrno)
	}
	for _, name := range []string{
		"mount", "umount2", "unshare", "setns", "bpf", "kexec_load", "init_module", "finit_module",
		"delete_module", "reboot", "swapon", "keyctl", "add_key", "request_key", "open_by_handle_at",
		"perf_event_open", "userfaultfd", "pivot_root", "acct", "settimeofday", "clone3", "clone",
		"socket", "personality", "iopl", "syslog", "lookup_dcookie", "fsopen", "move_mount",
	} {
		if allowed(p, name) {
			t.Errorf("%s is allowed unconditionally", name)
		}
	}
	for _, name := range []string{"read", "execve", "chroot", "arch_prctl", "ptrace", "futex", "rt_sigreturn", "io_uring_setup"} {
		want := name != "io_uring_setup"
		if got := allowed(p, name); got != want {
			t.Errorf("%s allowed = %v, want %v", name, got, want)
		}
	}
}

// Socket families (linux/socket.h) and errno values the profile names.
const (
	afALG       = 38
	errnoENOSYS = 38
)

func TestDefaultSeccompProfileRules(t *testing.T) {
	enosys := uint(errnoENOSYS)
	p := DefaultSeccompProfile(nil)
	wantClone := []specs.LinuxSyscall{
		{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7E020000, Op: specs.OpMaskedEqual}}},
		{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
	}
	if diff := cmp.Diff(wantClone[:1], conditional(p, "clone")); diff != "" {
		t.Errorf("clone rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantClone[1:], conditional(p, "clone3")); diff != "" {
		t.Errorf("clone3 rules (-want +got):\n%s", diff)
	}
	if allowed(p, "chroot") {
		t.Error("chroot allowed without CAP_SYS_CHROOT")
	}
	var families []uint64
	for _, s := range conditional(p, "socket") {
		if s.Args[0].Op == specs.OpLessThan {
			if s.Args[0].Value != afALG {
				t.Errorf("socket range ends at %d, want %d", s.Args[0].Value, afALG)
			}
			continue
		}
		families = append(families, s.Args[0].Value)
	}
	if diff := cmp.Diff([]uint64{39, 41, 42, 43, 44, 45}, families); diff != "" {
		t.Errorf("socket families above AF_ALG (-want +got):\n%s", diff)
	}
	if got := len(conditional(p, "personality")); got != 5 {
		t.Errorf("%d personality rules, want 5", got)
	}
}

func TestDefaultSeccompProfileCapabilities(t *testing.T) {
	p := DefaultSeccompProfile([]string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"})
	for _, name := range []string{"mount", "setns", "unshare", "clone", "clone3", "kcmp"} {
		if !allowed(p, name) {
			t.Errorf("%s not allowed with CAP_SYS_ADMIN and CAP_SYS_PTRACE", name)
		}
	}
	if got := conditional(p, "clone"); len(got) != 0 {
		t.Errorf("clone still restricted with CAP_SYS_ADMIN: %v", got)
	}
}

func TestSeccompArches(t *testing.T) {
	want := map[string][]specs.Arch{
		"amd64": {specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		"arm64": {specs.ArchARM, specs.ArchAARCH64},
	}[goruntime.GOARCH]
	if want == nil {
		t.Skipf("no expectation for %s", goruntime.GOARCH)
	}
	if diff := cmp.Diff(want, DefaultSeccompProfile(nil).Architectures); diff != "" {
		t.Errorf("arches (-want +got):\n%s", diff)
	}
}
