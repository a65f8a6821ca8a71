package oci

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// testInput is a plain container in a plain pod.
func testInput() Input {
	return Input{
		ID:        "c1",
		SandboxID: "p1",
		Config: ctrconfig.Container{
			Name:  "web",
			Image: "sha256:abc", UserSpecifiedImage: "nginx:1.27",
			Security: ctrconfig.Security{Namespaces: ctrconfig.Namespaces{PID: ctrconfig.NamespaceContainer}},
		},
		Pod:          ctrconfig.Pod{Name: "web-0", Namespace: "default", UID: "u-1", Hostname: "web-0"},
		Image:        ocispec.ImageConfig{Entrypoint: []string{"/docker-entrypoint.sh"}, Cmd: []string{"nginx"}, User: "app", Env: []string{"NGINX_VERSION=1.27"}},
		RootfsPath:   "/run/cradle/c1/rootfs",
		Namespaces:   PodNamespaces{Network: "/run/netns/p1", IPC: "/proc/9/ns/ipc", UTS: "/proc/9/ns/uts", PID: "/proc/9/ns/pid"},
		Files:        PodFiles{Hosts: "/var/lib/cradle/p1/hosts", ResolvConf: "/var/lib/cradle/p1/resolv.conf", Hostname: "/var/lib/cradle/p1/hostname", Shm: "/run/cradle/p1/shm"},
		CgroupParent: "/kubepods/besteffort/podu-1",
		Host:         Host{MinOOMScoreAdj: -1000, SwapAccounting: true, RuntimeDefaultSeccomp: SeccompUnconfined},
	}
}

func TestBuild(t *testing.T) {
	in := testInput()
	in.Config.Env = []ctrconfig.EnvVar{{Key: "MODE", Value: "prod"}}
	in.Config.Mounts = []ctrconfig.Mount{{HostPath: "/var/lib/kubelet/pods/u-1/volumes/data", ContainerPath: "/data", Readonly: true}}
	in.Config.Resources = &ctrconfig.Resources{CPUShares: 2, MemoryLimit: 64 << 20, OOMScoreAdj: 1000}
	in.Pod.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
	res, err := Build(context.Background(), in, WithImageFS(testImageFS()), WithPidsLimit(100))
	if err != nil {
		t.Fatal(err)
	}
	caps := defaultCapabilities()
	adj := 1000
	want := &specs.Spec{
		Version: SpecVersion,
		Root:    &specs.Root{Path: "/run/cradle/c1/rootfs"},
		Process: &specs.Process{
			Args:         []string{"/docker-entrypoint.sh", "nginx"},
			Env:          []string{defaultPathEnv, "HOSTNAME=web-0", "NGINX_VERSION=1.27", "MODE=prod"},
			Cwd:          "/",
			User:         specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 33, 44}},
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			OOMScoreAdj:  &adj,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/data", Type: "bind", Source: "/var/lib/kubelet/pods/u-1/volumes/data", Options: []string{"rbind", "rprivate", "ro"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			bindMount("/var/lib/cradle/p1/hosts", "/etc/hosts", "rprivate", "rw"),
			bindMount("/var/lib/cradle/p1/resolv.conf", "/etc/resolv.conf", "rprivate", "rw"),
			bindMount("/var/lib/cradle/p1/hostname", "/etc/hostname", "rprivate", "rw"),
			bindMount("/run/cradle/p1/shm", "/dev/shm", "rprivate", "rw"),
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Annotations: map[string]string{
			AnnotationContainerType: "container", AnnotationContainerName: "web", AnnotationImageName: "nginx:1.27",
			AnnotationSandboxID: "p1", AnnotationSandboxName: "web-0", AnnotationSandboxNamespace: "default", AnnotationSandboxUID: "u-1",
		},
		Linux: &specs.Linux{
			Sysctl: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				CPU:     &specs.LinuxCPU{Shares: u64p(2)},
				Memory:  &specs.LinuxMemory{Limit: i64p(64 << 20), Swap: i64p(64 << 20)},
				Pids:    &specs.LinuxPids{Limit: i64p(100)},
			},
			CgroupsPath: "/kubepods/besteffort/podu-1/c1",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: "/run/netns/p1"},
				{Type: specs.UTSNamespace, Path: "/proc/9/ns/uts"},
				{Type: specs.IPCNamespace, Path: "/proc/9/ns/ipc"},
				{Type: specs.PIDNamespace},
			},
			MaskedPaths:   defaultMaskedPaths(),
			ReadonlyPaths: defaultReadonlyPaths(),
		},
	}
	if diff := cmp.Diff(want, res.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	data, err := json.Marshal(res.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var back specs.Spec
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(res.Spec, &back); diff != "" {
		t.Errorf("spec after a JSON round trip (-built +decoded):\n%s", diff)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings = %q, want none", res.Warnings)
	}
}

func TestBuildPrivileged(t *testing.T) {
	in := testInput()
	in.Config.Security.Privileged = true
	in.Pod.Privileged = true
	in.Host = Host{CgroupV2: true, AppArmor: true}
	res, err := Build(context.Background(), in, WithImageFS(testImageFS()),
		WithDeviceLookup(testDevices()), WithHostDevices("/dev/null"))
	if err != nil {
		t.Fatal(err)
	}
	s := res.Spec
	got := struct {
		Caps                []string
		Masked, Readonly    []string
		Seccomp             *specs.LinuxSeccomp
		AppArmor            string
		SysOpts, CgroupOpts []string
		Devices             []specs.LinuxDevice
		Rules               []specs.LinuxDeviceCgroup
		HasCgroupNS         bool
	}{
		Caps: s.Process.Capabilities.Bounding, Masked: s.Linux.MaskedPaths, Readonly: s.Linux.ReadonlyPaths,
		Seccomp: s.Linux.Seccomp, AppArmor: s.Process.ApparmorProfile, Devices: s.Linux.Devices, Rules: s.Linux.Resources.Devices,
	}
	for _, m := range s.Mounts {
		switch m.Destination {
		case "/sys":
			got.SysOpts = m.Options
		case "/sys/fs/cgroup":
			got.CgroupOpts = m.Options
		}
	}
	for _, ns := range s.Linux.Namespaces {
		got.HasCgroupNS = got.HasCgroupNS || ns.Type == specs.CgroupNamespace
	}
	want := got
	want.Caps, want.Masked, want.Readonly, want.Seccomp, want.AppArmor = allCapabilities(), nil, nil, nil, ""
	want.SysOpts = []string{"nosuid", "noexec", "nodev", "rw"}
	want.CgroupOpts = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
	want.Devices = []specs.LinuxDevice{dev("/dev/null", "c", 1, 3, 0o666, 0)}
	want.Rules = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	want.HasCgroupNS = false
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("privileged (-want +got):\n%s", diff)
	}
}

func TestBuildSeccomp(t *testing.T) {
	loader := func(_ context.Context, ref string) ([]byte, error) {
		switch ref {
		case "profiles/audit.json":
			return []byte(`{"defaultAction":"SCMP_ACT_LOG","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["kill"],"action":"SCMP_ACT_ERRNO"}]}`), nil
		case "profiles/bad.json":
			return []byte(`{"defaultAction":`), nil
		case "profiles/empty.json":
			return []byte(`{}`), nil
		}
		return nil, fs.ErrNotExist
	}
	local := func(ref string) *ctrconfig.SecurityProfile {
		return &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost, LocalhostRef: ref}
	}
	tests := []struct {
		name     string
		profile  *ctrconfig.SecurityProfile
		host     SeccompDefault
		noLoader bool
		want     specs.LinuxSeccompAction // "" for no filter
		wantErr  error
	}{
		{name: "no profile is unconfined"},
		{name: "runtime default", profile: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileRuntimeDefault}, want: specs.ActErrno},
		{name: "runtime default unconfined on host", profile: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileRuntimeDefault}, host: SeccompUnconfined},
		{name: "unconfined", profile: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileUnconfined}},
		{name: "localhost", profile: local("profiles/audit.json"), want: specs.ActLog},
		{name: "localhost missing", profile: local("profiles/none.json"), wantErr: errdefs.ErrInvalidArgument},
		{name: "localhost bad json", profile: local("profiles/bad.json"), wantErr: errdefs.ErrInvalidArgument},
		{name: "localhost empty", profile: local("profiles/empty.json"), wantErr: errdefs.ErrInvalidArgument},
		{name: "no loader", profile: local("profiles/audit.json"), noLoader: true, wantErr: errdefs.ErrFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput()
			in.Host.RuntimeDefaultSeccomp = tt.host
			in.Config.Security.Seccomp = tt.profile
			opts := []Opt{WithImageFS(testImageFS())}
			if !tt.noLoader {
				opts = append(opts, WithProfileLoader(loader))
			}
			res, err := Build(context.Background(), in, opts...)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			var got specs.LinuxSeccompAction
			if res.Spec.Linux.Seccomp != nil {
				got = res.Spec.Linux.Seccomp.DefaultAction
			}
			if got != tt.want {
				t.Errorf("seccomp default action = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Input)
		wantErr error
	}{
		{name: "no ID", edit: func(in *Input) { in.ID = "" }, wantErr: errdefs.ErrInvalidArgument},
		{name: "no config", edit: func(in *Input) { in.Config = ctrconfig.Container{} }, wantErr: errdefs.ErrInvalidArgument},
		{name: "no rootfs", edit: func(in *Input) { in.RootfsPath = "" }, wantErr: errdefs.ErrInvalidArgument},
		{name: "relative working dir", edit: func(in *Input) { in.Config.WorkingDir = "srv" }, wantErr: errdefs.ErrInvalidArgument},
		{name: "unknown user", edit: func(in *Input) { in.Image.User = "ghost" }, wantErr: errdefs.ErrInvalidArgument},
		{name: "privileged in unprivileged pod", edit: func(in *Input) { in.Config.Security.Privileged = true }, wantErr: errdefs.ErrInvalidArgument},
		{name: "node sysctl", edit: func(in *Input) { in.Pod.Sysctls = map[string]string{"vm.swappiness": "1"} }, wantErr: errdefs.ErrInvalidArgument},
		{name: "relative mount", edit: func(in *Input) { in.Config.Mounts = []ctrconfig.Mount{{HostPath: "data", ContainerPath: "/d"}} }, wantErr: errdefs.ErrInvalidArgument},
		{name: "unified on v1", edit: func(in *Input) {
			in.Config.Resources = &ctrconfig.Resources{Unified: map[string]string{"memory.high": "1"}}
		}, wantErr: errdefs.ErrInvalidArgument},
		{name: "device without lookup", edit: func(in *Input) {
			in.Config.Devices = []ctrconfig.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse"}}
		}, wantErr: errdefs.ErrFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput()
			tt.edit(&in)
			_, err := Build(context.Background(), in, WithImageFS(testImageFS()))
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestBuildWarnsOnOOMClamp(t *testing.T) {
	in := testInput()
	in.Host.MinOOMScoreAdj = -500
	in.Config.Resources = &ctrconfig.Resources{OOMScoreAdj: -997}
	res, err := Build(context.Background(), in, WithImageFS(testImageFS()))
	if err != nil {
		t.Fatal(err)
	}
	if got := *res.Spec.Process.OOMScoreAdj; got != -500 {
		t.Errorf("oom_score_adj = %d, want -500", got)
	}
	if len(res.Warnings) != 1 {
		t.Errorf("warnings = %q, want one", res.Warnings)
	}
}

func TestBuildTerminalAndReadonly(t *testing.T) {
	in := testInput()
	in.Config.TTY = true
	in.Config.Security.ReadonlyRootfs = true
	in.Config.Security.NoNewPrivs = true
	in.Host.SystemdCgroup = true
	in.CgroupParent = "kubepods-besteffort-podu_1.slice"
	res, err := Build(context.Background(), in, WithImageFS(testImageFS()))
	if err != nil {
		t.Fatal(err)
	}
	s := res.Spec
	got := []any{s.Process.Terminal, s.Root.Readonly, s.Process.NoNewPrivileges, s.Linux.CgroupsPath}
	want := []any{true, true, true, "kubepods-besteffort-podu_1.slice:cradle:c1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
