package oci

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// AppArmorDefaultProfile is the AppArmor profile of RuntimeDefault. The
// daemon loads it at start-up.
const AppArmorDefaultProfile = "cri-cradle-default"

// defaultCapabilities are what an unprivileged container gets, as in
// containerd and Docker.
func defaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// allCapabilities are the Linux capabilities in kernel order (through 6.x).
func allCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
		"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
		"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
		"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
		"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
		"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
		"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
		"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
		"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

// defaultMaskedPaths are hidden from unprivileged containers.
func defaultMaskedPaths() []string {
	return []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
		"/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
}

// defaultReadonlyPaths are read-only in unprivileged containers.
func defaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// capabilities sets the capability sets from the add/drop lists, or all
// of them for a privileged container.
func (b *builder) capabilities(context.Context) error {
	caps := defaultCapabilities()
	var ambient []string
	if b.privileged() {
		caps = allCapabilities()
	} else {
		var err error
		if caps, err = applyCapabilities(caps, b.security().Capabilities); err != nil {
			return err
		}
		if ambient, err = normalizeCaps(b.security().Capabilities.AddAmbient); err != nil {
			return err
		}
		caps = dedupe(append(caps, ambient...))
	}
	b.spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:    caps,
		Effective:   slices.Clone(caps),
		Permitted:   slices.Clone(caps),
		Inheritable: ambient,
		Ambient:     slices.Clone(ambient),
	}
	return nil
}

// applyCapabilities follows containerd's order: add ALL, drop ALL, then
// the named additions, then the named drops.
func applyCapabilities(caps []string, c ctrconfig.Capabilities) ([]string, error) {
	if len(c.Add) == 0 && len(c.Drop) == 0 {
		return caps, nil
	}
	isAll := func(s string) bool { return strings.EqualFold(s, "ALL") }
	if slices.ContainsFunc(c.Add, isAll) {
		caps = allCapabilities()
	}
	if slices.ContainsFunc(c.Drop, isAll) {
		caps = []string{}
	}
	add, err := normalizeCaps(slices.DeleteFunc(slices.Clone(c.Add), isAll))
	if err != nil {
		return nil, err
	}
	drop, err := normalizeCaps(slices.DeleteFunc(slices.Clone(c.Drop), isAll))
	if err != nil {
		return nil, err
	}
	caps = dedupe(append(slices.Clone(caps), add...))
	return slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drop, c) }), nil
}

// normalizeCaps upper-cases names, adds the CAP_ prefix and rejects names
// the kernel does not know.
func normalizeCaps(in []string) ([]string, error) {
	var out []string
	for _, c := range in {
		name := strings.ToUpper(c)
		if !strings.HasPrefix(name, "CAP_") {
			name = "CAP_" + name
		}
		if !slices.Contains(allCapabilities(), name) {
			return nil, fmt.Errorf("unknown capability %q: %w", c, errdefs.ErrInvalidArgument)
		}
		out = append(out, name)
	}
	return out, nil
}

// securityOptions sets privileged mode, masked and read-only paths and the
// AppArmor profile.
func (b *builder) securityOptions(context.Context) error {
	sc := b.security()
	if b.privileged() && !b.in.Pod.Privileged {
		return fmt.Errorf("privileged container in an unprivileged pod: %w", errdefs.ErrInvalidArgument)
	}
	if !b.privileged() {
		b.spec.Linux.MaskedPaths = pathsOrDefault(sc.MaskedPaths, defaultMaskedPaths(), b.userNamespaced())
		b.spec.Linux.ReadonlyPaths = pathsOrDefault(sc.ReadonlyPaths, defaultReadonlyPaths(), b.userNamespaced())
	}
	profile, err := appArmorProfile(sc.AppArmor, b.privileged(), b.in.Host.AppArmor)
	if err != nil {
		return err
	}
	b.spec.Process.ApparmorProfile = profile
	return nil
}

// pathsOrDefault keeps the paths kubelet sent. kubelet sends the defaults
// for procMount Default and nothing for Unmasked, which it allows only in a
// user namespace: so no paths mean the defaults outside one, none inside.
func pathsOrDefault(given, defaults []string, userns bool) []string {
	switch {
	case len(given) > 0:
		return slices.Clone(given)
	case userns:
		return nil
	}
	return defaults
}

// appArmorProfile picks the AppArmor profile name, or none; no profile
// given means RuntimeDefault.
func appArmorProfile(p *ctrconfig.SecurityProfile, privileged, enabled bool) (string, error) {
	typ, ref, err := securityProfile(p, ctrconfig.ProfileRuntimeDefault)
	if err != nil {
		return "", fmt.Errorf("apparmor: %w", err)
	}
	switch {
	case typ == ctrconfig.ProfileUnconfined:
		return "", nil
	case typ == ctrconfig.ProfileLocalhost && !enabled:
		return "", fmt.Errorf("apparmor profile %q requested but AppArmor is disabled: %w", ref, errdefs.ErrFailedPrecondition)
	case !enabled || privileged && typ == ctrconfig.ProfileRuntimeDefault:
		return "", nil
	case typ == ctrconfig.ProfileLocalhost:
		return ref, nil
	}
	return AppArmorDefaultProfile, nil
}

// securityProfile reads a profile; none given is dflt.
func securityProfile(p *ctrconfig.SecurityProfile, dflt ctrconfig.ProfileType) (ctrconfig.ProfileType, string, error) {
	if p == nil {
		return dflt, "", nil
	}
	if p.Type == ctrconfig.ProfileLocalhost && p.LocalhostRef == "" {
		return 0, "", fmt.Errorf("localhost profile without a reference: %w", errdefs.ErrInvalidArgument)
	}
	return p.Type, p.LocalhostRef, nil
}
