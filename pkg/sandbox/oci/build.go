// Package oci builds the OCI runtime spec of a Kubernetes container from its
// config, what it takes from its pod's (both as ctrconfig has them, which
// pkg/cri translates from the CRI) and its image config. The
// same spec drives runc or crun on the host and the agent inside a microVM.
//
// The package is pure: it makes no syscalls and reads no files of its own.
// Facts about the host arrive in [Host]; the image's /etc/passwd and
// /etc/group arrive as an [fs.FS] ([WithImageFS]); device nodes are described
// by a [DeviceLookup]; Localhost seccomp profiles are read by a
// [ProfileLoader]. Build is a list of named steps, each in its own file.
package oci

import (
	"context"
	"fmt"
	"io/fs"
	"path"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Input is everything a container's spec is built from.
type Input struct {
	// ID is the container's ID; SandboxID the ID of its pod.
	ID        string
	SandboxID string
	// Config is the container's config; Pod what it takes from its pod's.
	Config ctrconfig.Container
	Pod    ctrconfig.Pod
	// Image is the image's config; ImageName the image reference reported
	// in annotations (defaults to Config's user-specified image).
	Image     ocispec.ImageConfig
	ImageName string
	// RootfsPath is the container's root filesystem (absolute, or relative
	// to the bundle).
	RootfsPath string
	// Namespaces are the pod's namespaces the container joins.
	Namespaces PodNamespaces
	// Files are the pod's files mounted into every container.
	Files PodFiles
	// CgroupParent is the pod's cgroup (a path, or a slice with systemd).
	CgroupParent string
	// Host are facts about the machine the container runs on.
	Host Host
}

// PodNamespaces are paths of the pod's namespaces (/proc/<pid>/ns/<kind> of
// the pod's infra process, or a bind-mounted namespace file). An empty path
// gives the container a namespace of its own.
type PodNamespaces struct {
	Network string
	IPC     string
	UTS     string
	PID     string
	User    string
	// TargetPID is the PID namespace of the target container, used when the
	// container's PID mode is TARGET (ephemeral debug containers).
	TargetPID string
}

// PodFiles are host paths of files and directories the pod shares with its
// containers. Empty paths are not mounted (the image's own files stay).
type PodFiles struct {
	Hosts      string
	ResolvConf string
	Hostname   string
	// Shm is the pod's /dev/shm; empty gives the container a private tmpfs.
	Shm string
}

// Host are facts about the host that change how a spec is built. They are
// detected once by the caller.
type Host struct {
	// CgroupV2 is true on a pure cgroup v2 host.
	CgroupV2 bool
	// SystemdCgroup is true when cgroups are managed through systemd: the
	// cgroups path is then "slice:prefix:name".
	SystemdCgroup bool
	// SwapAccounting is true when the memory controller accounts swap
	// (memory.memsw.* on v1, memory.swap.max on v2).
	SwapAccounting bool
	// RecursiveReadOnly is true when the kernel and the OCI runtime support
	// recursive read-only mounts ("rro", mount_setattr(2)).
	RecursiveReadOnly bool
	// UserNamespaces is true when pods may run in user namespaces.
	UserNamespaces bool
	// MinOOMScoreAdj is the lowest oom_score_adj the runtime may give: the
	// daemon's own value when it lacks CAP_SYS_RESOURCE, else -1000.
	// Lower requests are raised to it with a warning.
	MinOOMScoreAdj int
	// AppArmor is true when AppArmor is enabled on the host.
	AppArmor bool
	// RuntimeDefaultSeccomp says what the RuntimeDefault seccomp profile is.
	RuntimeDefaultSeccomp SeccompDefault
	// Controllers are the cgroup controllers that can hold the container's
	// limits (its pod cgroup's, see cgroup.Manager.Controllers); nil means
	// every one (the caller does not know, or a VM guest's own cgroups).
	Controllers map[string]bool
	// HugePageSizes are the huge page sizes the kernel offers ("2MB");
	// used only when Controllers is not nil.
	HugePageSizes []string
}

// Result is a built spec and what the caller should tell the user about it.
type Result struct {
	Spec     *specs.Spec
	Warnings []string
	// Dropped lists resources kubelet sets by default that this host's
	// cgroups cannot enforce and that were left out of the spec.
	Dropped []string
}

// Opt changes how Build works.
type Opt func(*options)

type options struct {
	imageFS     fs.FS
	devices     DeviceLookup
	hostDevices []string
	loader      ProfileLoader
	pidsLimit   int64
}

// WithImageFS gives the image's root filesystem, from which /etc/passwd and
// /etc/group resolve user and group names. On the host, pass the FS of an
// [os.Root] opened at the rootfs, so that symlinks in the image cannot lead
// outside it (os.DirFS follows them).
func WithImageFS(fsys fs.FS) Opt { return func(o *options) { o.imageFS = fsys } }

// WithDeviceLookup gives the way host device nodes are described.
func WithDeviceLookup(l DeviceLookup) Opt { return func(o *options) { o.devices = l } }

// WithHostDevices lists the host device nodes a privileged container gets.
func WithHostDevices(paths ...string) Opt {
	return func(o *options) { o.hostDevices = append(o.hostDevices, paths...) }
}

// WithProfileLoader gives the way Localhost seccomp profiles are read.
func WithProfileLoader(l ProfileLoader) Opt { return func(o *options) { o.loader = l } }

// WithPidsLimit limits the number of tasks in the container's cgroup.
func WithPidsLimit(n int64) Opt { return func(o *options) { o.pidsLimit = n } }

// builder carries one Build through its steps.
type builder struct {
	in       Input
	opts     options
	spec     *specs.Spec
	warnings []string
	dropped  []string
}

func (b *builder) warnf(format string, args ...any) {
	b.warnings = append(b.warnings, fmt.Sprintf(format, args...))
}

func (b *builder) security() *ctrconfig.Security { return &b.in.Config.Security }

func (b *builder) privileged() bool { return b.security().Privileged }

// Build turns in into an OCI runtime spec. Errors wrap errdefs classes:
// ErrInvalidArgument for a config that cannot run (including a missing
// device or Localhost profile), ErrFailedPrecondition for one this host or
// these options cannot honour, ErrNotImplemented for image volumes.
func Build(ctx context.Context, in Input, opts ...Opt) (Result, error) {
	if err := validateInput(in); err != nil {
		return Result{}, err
	}
	b := &builder{in: in, spec: baseSpec(in)}
	for _, o := range opts {
		o(&b.opts)
	}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"namespaces", b.namespaces},
		{"process", b.process},
		{"user", b.user},
		{"capabilities", b.capabilities},
		{"security", b.securityOptions},
		{"seccomp", b.seccomp},
		{"sysctls", b.sysctls},
		{"mounts", b.mounts},
		{"devices", b.devices},
		{"resources", b.resources},
		{"annotations", b.annotations},
	}
	for _, s := range steps {
		if err := s.run(ctx); err != nil {
			return Result{}, fmt.Errorf("container %q: %s: %w", in.ID, s.name, err)
		}
	}
	return Result{Spec: b.spec, Warnings: b.warnings, Dropped: b.dropped}, nil
}

func validateInput(in Input) error {
	switch {
	case in.ID == "":
		return fmt.Errorf("container ID is empty: %w", errdefs.ErrInvalidArgument)
	case in.Config.Name == "":
		return fmt.Errorf("container %q has no name: %w", in.ID, errdefs.ErrInvalidArgument)
	case in.RootfsPath == "":
		return fmt.Errorf("container %q has no rootfs: %w", in.ID, errdefs.ErrInvalidArgument)
	}
	return nil
}

// SpecVersion is the runtime-spec version written into specs: the newest
// that every supported runtime accepts (crun 1.8 refuses 1.2.0 and later;
// nothing cradle writes needs more).
const SpecVersion = "1.1.0"

// baseSpec is the spec every container starts from.
func baseSpec(in Input) *specs.Spec {
	return &specs.Spec{
		Version: SpecVersion,
		Root: &specs.Root{
			Path:     in.RootfsPath,
			Readonly: in.Config.Security.ReadonlyRootfs,
		},
		Process: &specs.Process{Cwd: "/"},
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath(in.CgroupParent, in.ID, in.Host.SystemdCgroup),
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
}

// cgroupsPath places the container under its pod's cgroup.
func cgroupsPath(parent, id string, systemd bool) string {
	if systemd {
		if parent == "" {
			parent = "system.slice"
		}
		return parent + ":cradle:" + id
	}
	if parent == "" {
		return ""
	}
	return path.Join(parent, id)
}
