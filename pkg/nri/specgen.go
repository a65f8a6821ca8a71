package nri

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specEditor lets the nri module's spec generator (runtime-tools/generate)
// apply a plugin's adjustment to a container's OCI spec: its
// UnderlyingGenerator, written on the spec directly.
type specEditor struct{ s *specs.Spec }

func (e *specEditor) Spec() *specs.Spec { return e.s }

func (e *specEditor) process() *specs.Process {
	if e.s.Process == nil {
		e.s.Process = &specs.Process{}
	}
	return e.s.Process
}

func (e *specEditor) linux() *specs.Linux {
	if e.s.Linux == nil {
		e.s.Linux = &specs.Linux{}
	}
	return e.s.Linux
}

func (e *specEditor) resources() *specs.LinuxResources {
	l := e.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (e *specEditor) cpu() *specs.LinuxCPU {
	r := e.resources()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (e *specEditor) memory() *specs.LinuxMemory {
	r := e.resources()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (e *specEditor) hooks() *specs.Hooks {
	if e.s.Hooks == nil {
		e.s.Hooks = &specs.Hooks{}
	}
	return e.s.Hooks
}

func (e *specEditor) AddAnnotation(key, value string) {
	if e.s.Annotations == nil {
		e.s.Annotations = map[string]string{}
	}
	e.s.Annotations[key] = value
}

func (e *specEditor) RemoveAnnotation(key string) { delete(e.s.Annotations, key) }

func (e *specEditor) AddDevice(d specs.LinuxDevice) {
	l := e.linux()
	for i := range l.Devices {
		if l.Devices[i].Path == d.Path {
			l.Devices[i] = d
			return
		}
	}
	l.Devices = append(l.Devices, d)
}

func (e *specEditor) RemoveDevice(path string) {
	l := e.linux()
	l.Devices = slices.DeleteFunc(l.Devices, func(d specs.LinuxDevice) bool { return d.Path == path })
}

func (e *specEditor) AddOrReplaceLinuxNamespace(ns, path string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := e.linux()
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == t {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (e *specEditor) RemoveLinuxNamespace(ns string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := e.linux()
	l.Namespaces = slices.DeleteFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
	return nil
}

// namespaceType accepts the OCI names and the short ones ("net", "mnt").
func namespaceType(ns string) (specs.LinuxNamespaceType, error) {
	switch ns {
	case "network", "net":
		return specs.NetworkNamespace, nil
	case "pid":
		return specs.PIDNamespace, nil
	case "mount", "mnt":
		return specs.MountNamespace, nil
	case "ipc":
		return specs.IPCNamespace, nil
	case "uts":
		return specs.UTSNamespace, nil
	case "user":
		return specs.UserNamespace, nil
	case "cgroup":
		return specs.CgroupNamespace, nil
	case "time":
		return specs.TimeNamespace, nil
	}
	return "", fmt.Errorf("unknown namespace type %q", ns)
}

func (e *specEditor) AddPreStartHook(h specs.Hook) {
	e.hooks().Prestart = append(e.hooks().Prestart, h) //nolint:staticcheck // NRI plugins may still ask for it
}
func (e *specEditor) AddPostStartHook(h specs.Hook) {
	e.hooks().Poststart = append(e.hooks().Poststart, h)
}
func (e *specEditor) AddPostStopHook(h specs.Hook) {
	e.hooks().Poststop = append(e.hooks().Poststop, h)
}

// AddProcessEnv sets name=value, replacing an earlier value of name.
func (e *specEditor) AddProcessEnv(name, value string) {
	p := e.process()
	kv := name + "=" + value
	for i, v := range p.Env {
		if strings.HasPrefix(v, name+"=") || v == name {
			p.Env[i] = kv
			return
		}
	}
	p.Env = append(p.Env, kv)
}

func (e *specEditor) ClearProcessEnv()             { e.process().Env = nil }
func (e *specEditor) SetProcessArgs(args []string) { e.process().Args = slices.Clone(args) }
func (e *specEditor) SetProcessOOMScoreAdj(adj int) {
	e.process().OOMScoreAdj = &adj
}

func (e *specEditor) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := e.resources()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

func (e *specEditor) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := e.resources()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (e *specEditor) AddLinuxResourcesUnified(key, val string) {
	r := e.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (e *specEditor) AddLinuxSysctl(key, value string) {
	l := e.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (e *specEditor) RemoveLinuxSysctl(key string) { delete(e.linux().Sysctl, key) }

func (e *specEditor) AddMount(m specs.Mount) { e.s.Mounts = append(e.s.Mounts, m) }
func (e *specEditor) ClearMounts()           { e.s.Mounts = nil }
func (e *specEditor) Mounts() []specs.Mount  { return slices.Clone(e.s.Mounts) }
func (e *specEditor) RemoveMount(dest string) {
	e.s.Mounts = slices.DeleteFunc(e.s.Mounts, func(m specs.Mount) bool { return m.Destination == dest })
}

func (e *specEditor) SetLinuxCgroupsPath(path string)      { e.linux().CgroupsPath = path }
func (e *specEditor) SetLinuxResourcesCPUCpus(cpus string) { e.cpu().Cpus = cpus }
func (e *specEditor) SetLinuxResourcesCPUMems(mems string) { e.cpu().Mems = mems }
func (e *specEditor) SetLinuxResourcesCPUPeriod(period uint64) {
	e.cpu().Period = &period
}
func (e *specEditor) SetLinuxResourcesCPUQuota(quota int64) { e.cpu().Quota = &quota }
func (e *specEditor) SetLinuxResourcesCPURealtimePeriod(period uint64) {
	e.cpu().RealtimePeriod = &period
}
func (e *specEditor) SetLinuxResourcesCPURealtimeRuntime(t int64) { e.cpu().RealtimeRuntime = &t }
func (e *specEditor) SetLinuxResourcesCPUShares(shares uint64)    { e.cpu().Shares = &shares }
func (e *specEditor) SetLinuxResourcesMemoryLimit(limit int64)    { e.memory().Limit = &limit }
func (e *specEditor) SetLinuxResourcesMemorySwap(swap int64)      { e.memory().Swap = &swap }

func (e *specEditor) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
		e.linux().RootfsPropagation = rp
		return nil
	}
	return fmt.Errorf("rootfs propagation %q is not valid", rp)
}
