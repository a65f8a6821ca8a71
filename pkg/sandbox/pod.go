package sandbox

import (
	"strconv"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// PodConfig is what a pod is made from: the CRI PodSandboxConfig as the
// engine needs it (pkg/cri translates).
type PodConfig struct {
	Name         string
	UID          string
	Namespace    string
	Attempt      uint32
	Hostname     string
	LogDirectory string
	DNS          *DNSConfig // nil: the host's resolv.conf
	PortMappings []PortMapping
	Labels       map[string]string
	Annotations  map[string]string
	Handler      string // RuntimeClass handler; "" is the default
	Network      ctrconfig.NamespaceMode
	PID          ctrconfig.NamespaceMode
	IPC          ctrconfig.NamespaceMode
	CgroupParent string
	Sysctls      map[string]string
	// UserNS are the ID mappings of the pod's user namespace (kubelet's
	// hostUsers: false); nil runs the pod with the host's users.
	UserNS *ctrconfig.IDMappings `json:",omitempty"`
	// UserNSNode records that the config named the host's user namespace
	// (mode NODE) rather than saying nothing: PodSandboxStatus reports it.
	UserNSNode bool `json:",omitempty"`
	// RequestedHostname is the hostname the config asks for, "" when it
	// names none (Hostname is then the one the engine chose): containers'
	// HOSTNAME and UTS name come from it.
	RequestedHostname string `json:",omitempty"`
	// Privileged allows the pod's containers to be privileged.
	Privileged bool `json:",omitempty"`
	// Resources are the pod's resources as kubelet gives them (the sum
	// of its containers'), Overhead its RuntimeClass's; nil: not given.
	// UpdatePodResources changes them.
	Resources *ctrconfig.Resources `json:",omitempty"`
	Overhead  *ctrconfig.Resources `json:",omitempty"`
}

// DNSConfig is the pod's resolv.conf.
type DNSConfig struct {
	Servers  []string
	Searches []string
	Options  []string
}

// PortMapping is a hostPort.
type PortMapping struct {
	Protocol      string // tcp, udp
	ContainerPort int32
	HostPort      int32
	HostIP        string
}

// Pod is a pod sandbox as the engine keeps it: checkpointed on every
// change, so that a restarted daemon knows it.
type Pod struct {
	ID        string
	Config    PodConfig
	Handler   string // resolved handler name
	State     PodState
	CreatedAt time.Time

	Dir    string            // <state>/pods/<id>: hostname, hosts, resolv.conf, shm
	NetNS  string            // pinned network namespace; "" with host networking
	NS     map[string]string // other pinned namespaces by kind ("ipc", "uts")
	Shm    string            // the pod's /dev/shm
	Cgroup string            // the pod's cgroup
	IPs    []string

	// Pid is the pod's own process when its backend runs one (the infra
	// process holding a shared PID namespace; a VMM), 0 when none; PidStart
	// is its start time in clock ticks since boot (/proc/<pid>/stat), so
	// that a recycled pid is never mistaken for it. PidCgroup is the leaf
	// cgroup the engine put it in.
	Pid       int
	PidStart  uint64
	PidCgroup string
	// AuxPids are the backend's other host processes of the pod (a VM's
	// virtiofsd): the engine moves them into PidCgroup with Pid. The
	// backend alone watches and stops them.
	AuxPids []int

	// logged holds the notes already logged for this pod (resources its
	// cgroup cannot enforce), so each is said once; not checkpointed.
	logged map[string]bool
}

// uniqueName is kubelet's unique pod name: one pod per name at a time.
func (c PodConfig) uniqueName() string {
	return c.Name + "_" + c.Namespace + "_" + c.UID + "_" + strconv.FormatUint(uint64(c.Attempt), 10)
}

// ContainerPod is what the specs of the pod's containers take from its
// config.
func (c PodConfig) ContainerPod() ctrconfig.Pod {
	return ctrconfig.Pod{Name: c.Name, Namespace: c.Namespace, UID: c.UID, Hostname: c.RequestedHostname,
		Network: c.Network, PID: c.PID, IPC: c.IPC, UserNS: c.UserNS, Privileged: c.Privileged, Sysctls: c.Sysctls}
}
