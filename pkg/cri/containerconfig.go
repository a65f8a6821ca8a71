package cri

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI's ContainerConfig translated into the engine's
// ctrconfig.Container, and back where ContainerStatus reports it. The
// CRI's enums (namespace modes, mount propagation, groups policy,
// profile types) share their values with ctrconfig's, so that a value
// the engine does not know still reaches the spec builder, which refuses
// it as it always did.

// toContainerConfig translates a container's config. Only the deprecated
// string forms of the security profiles can be refused here: what else
// the engine cannot run it refuses itself.
func toContainerConfig(c *runtime.ContainerConfig) (ctrconfig.Container, error) {
	out := ctrconfig.Container{
		Name: c.GetMetadata().GetName(), Attempt: c.GetMetadata().GetAttempt(),
		Image: c.GetImage().GetImage(), UserSpecifiedImage: c.GetImage().GetUserSpecifiedImage(),
		Command: c.GetCommand(), Args: c.GetArgs(), WorkingDir: c.GetWorkingDir(),
		Labels: c.GetLabels(), Annotations: c.GetAnnotations(), LogPath: c.GetLogPath(),
		Stdin: c.GetStdin(), StdinOnce: c.GetStdinOnce(), TTY: c.GetTty(),
		Resources: toResources(c.GetLinux().GetResources()),
	}
	for _, kv := range c.GetEnvs() {
		out.Env = append(out.Env, ctrconfig.EnvVar{Key: kv.GetKey(), Value: string(kv.GetValue())})
	}
	for _, m := range c.GetMounts() {
		out.Mounts = append(out.Mounts, toMount(m))
	}
	for _, d := range c.GetDevices() {
		out.Devices = append(out.Devices, ctrconfig.Device{ContainerPath: d.GetContainerPath(), HostPath: d.GetHostPath(), Permissions: d.GetPermissions()})
	}
	for _, d := range c.GetCDIDevices() {
		out.CDIDevices = append(out.CDIDevices, d.GetName())
	}
	if s := c.GetStopSignal(); s != runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
		out.StopSignal = strings.TrimPrefix(s.String(), "SIGNAL_") // SIGNAL_SIGUSR1 → SIGUSR1
	}
	sec, err := toSecurity(c.GetLinux().GetSecurityContext())
	if err != nil {
		return ctrconfig.Container{}, fmt.Errorf("container %q: %w", out.Name, err)
	}
	out.Security = sec
	return out, nil
}

func toMount(m *runtime.Mount) ctrconfig.Mount {
	return ctrconfig.Mount{
		ContainerPath: m.GetContainerPath(), HostPath: m.GetHostPath(),
		Readonly: m.GetReadonly(), RecursiveReadOnly: m.GetRecursiveReadOnly(), SELinuxRelabel: m.GetSelinuxRelabel(),
		Propagation: ctrconfig.Propagation(m.GetPropagation()),
		UIDMappings: toIDMappings(m.GetUidMappings()), GIDMappings: toIDMappings(m.GetGidMappings()),
		Image: m.GetImage().GetImage(), ImageSubPath: m.GetImageSubPath(), Options: m.GetMountOptions(),
	}
}

// fromMount is a mount as kubelet asked for it; imageRef is the ID of the
// image an image volume mounts ("" unknown).
func fromMount(m ctrconfig.Mount, imageRef string) *runtime.Mount {
	out := &runtime.Mount{
		ContainerPath: m.ContainerPath, HostPath: m.HostPath,
		Readonly: m.Readonly, RecursiveReadOnly: m.RecursiveReadOnly, SelinuxRelabel: m.SELinuxRelabel,
		Propagation: runtime.MountPropagation(m.Propagation),
		UidMappings: fromIDMappings(m.UIDMappings), GidMappings: fromIDMappings(m.GIDMappings),
		ImageSubPath: m.ImageSubPath, MountOptions: m.Options,
	}
	if m.IsImageVolume() {
		out.Image = &runtime.ImageSpec{Image: m.Image, ImageRef: imageRef}
	}
	return out
}

func toIDMappings(in []*runtime.IDMapping) []ctrconfig.IDMapping {
	var out []ctrconfig.IDMapping
	for _, m := range in {
		out = append(out, ctrconfig.IDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out
}

func fromIDMappings(in []ctrconfig.IDMapping) []*runtime.IDMapping {
	var out []*runtime.IDMapping
	for _, m := range in {
		out = append(out, &runtime.IDMapping{ContainerId: m.ContainerID, HostId: m.HostID, Length: m.Size})
	}
	return out
}

// toResources translates Linux resources; nil stays nil (none given).
func toResources(r *runtime.LinuxContainerResources) *ctrconfig.Resources {
	if r == nil {
		return nil
	}
	out := &ctrconfig.Resources{
		CPUPeriod: r.GetCpuPeriod(), CPUQuota: r.GetCpuQuota(), CPUShares: r.GetCpuShares(),
		MemoryLimit: r.GetMemoryLimitInBytes(), MemorySwapLimit: r.GetMemorySwapLimitInBytes(), OOMScoreAdj: r.GetOomScoreAdj(),
		CpusetCPUs: r.GetCpusetCpus(), CpusetMems: r.GetCpusetMems(), Unified: r.GetUnified(),
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, ctrconfig.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}

// fromResources is toResources backwards.
func fromResources(r *ctrconfig.Resources) *runtime.LinuxContainerResources {
	if r == nil {
		return nil
	}
	out := &runtime.LinuxContainerResources{
		CpuPeriod: r.CPUPeriod, CpuQuota: r.CPUQuota, CpuShares: r.CPUShares,
		MemoryLimitInBytes: r.MemoryLimit, MemorySwapLimitInBytes: r.MemorySwapLimit, OomScoreAdj: r.OOMScoreAdj,
		CpusetCpus: r.CpusetCPUs, CpusetMems: r.CpusetMems, Unified: r.Unified,
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &runtime.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
	}
	return out
}

func toSecurity(sc *runtime.LinuxContainerSecurityContext) (ctrconfig.Security, error) {
	ns := sc.GetNamespaceOptions()
	out := ctrconfig.Security{
		Privileged: sc.GetPrivileged(),
		Capabilities: ctrconfig.Capabilities{Add: sc.GetCapabilities().GetAddCapabilities(), Drop: sc.GetCapabilities().GetDropCapabilities(),
			AddAmbient: sc.GetCapabilities().GetAddAmbientCapabilities()},
		Namespaces: ctrconfig.Namespaces{
			Network: ctrconfig.NamespaceMode(ns.GetNetwork()), PID: ctrconfig.NamespaceMode(ns.GetPid()), IPC: ctrconfig.NamespaceMode(ns.GetIpc()),
			TargetID: ns.GetTargetId(),
		},
		RunAsUsername: sc.GetRunAsUsername(), ReadonlyRootfs: sc.GetReadonlyRootfs(),
		SupplementalGroups:       sc.GetSupplementalGroups(),
		SupplementalGroupsPolicy: ctrconfig.GroupsPolicy(sc.GetSupplementalGroupsPolicy()),
		NoNewPrivs:               sc.GetNoNewPrivs(), MaskedPaths: sc.GetMaskedPaths(), ReadonlyPaths: sc.GetReadonlyPaths(),
	}
	if u := ns.GetUsernsOptions(); u != nil {
		out.Namespaces.UserNS = &ctrconfig.UserNS{Mode: ctrconfig.NamespaceMode(u.GetMode()), UIDs: toIDMappings(u.GetUids()), GIDs: toIDMappings(u.GetGids())}
	}
	if s := sc.GetSelinuxOptions(); s != nil {
		out.SELinux = &ctrconfig.SELinux{User: s.GetUser(), Role: s.GetRole(), Type: s.GetType(), Level: s.GetLevel()}
	}
	if u := sc.GetRunAsUser(); u != nil {
		out.RunAsUser = ptr(u.GetValue())
	}
	if g := sc.GetRunAsGroup(); g != nil {
		out.RunAsGroup = ptr(g.GetValue())
	}
	var err error
	if out.Seccomp, err = toProfile(sc.GetSeccomp(), sc.GetSeccompProfilePath()); err != nil { //nolint:staticcheck // the deprecated field is still sent by older kubelets
		return out, fmt.Errorf("seccomp: %w", err)
	}
	if out.AppArmor, err = toProfile(sc.GetApparmor(), sc.GetApparmorProfile()); err != nil { //nolint:staticcheck // the deprecated field is still sent by older kubelets
		return out, fmt.Errorf("apparmor: %w", err)
	}
	return out, nil
}

// toProfile reads a SecurityProfile, falling back to the deprecated string
// form ("runtime/default", "docker/default", "unconfined",
// "localhost/<ref>"); neither given is nil, which the spec builder reads
// as the CRI does (seccomp: none; AppArmor: the runtime's default).
func toProfile(p *runtime.SecurityProfile, legacy string) (*ctrconfig.SecurityProfile, error) {
	if p != nil {
		return &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileType(p.GetProfileType()), LocalhostRef: p.GetLocalhostRef()}, nil
	}
	switch {
	case legacy == "":
		return nil, nil
	case legacy == "runtime/default" || legacy == "docker/default":
		return &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileRuntimeDefault}, nil
	case legacy == "unconfined":
		return &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileUnconfined}, nil
	case strings.HasPrefix(legacy, "localhost/") && len(legacy) > len("localhost/"):
		return &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost, LocalhostRef: strings.TrimPrefix(legacy, "localhost/")}, nil
	}
	return nil, fmt.Errorf("unknown profile %q: %w", legacy, errdefs.ErrInvalidArgument)
}

func ptr[T any](v T) *T { return &v }
