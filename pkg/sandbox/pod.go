package sandbox

import (
	"strconv"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// NamespaceMode says whose namespace a pod uses (the CRI's NamespaceMode).
type NamespaceMode int

// Namespace modes.
const (
	NamespacePod NamespaceMode = iota // the pod's own, shared by its containers
	NamespaceContainer
	NamespaceNode // the host's
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
	Network      NamespaceMode
	PID          NamespaceMode
	IPC          NamespaceMode
	CgroupParent string
	Sysctls      map[string]string
	// UserNS are the ID mappings of the pod's user namespace (kubelet's
	// hostUsers: false); nil runs the pod with the host's users.
	UserNS *IDMappings `json:",omitempty"`
	// Raw is the CRI config the pod was made from: container specs are
	// built from it.
	Raw *runtime.PodSandboxConfig
}

// IDMappings are the uid and gid mappings of a user namespace.
type IDMappings struct {
	UIDs []IDMapping
	GIDs []IDMapping
}

// IDMapping maps Size IDs from ContainerID inside a user namespace to
// HostID outside.
type IDMapping struct {
	ContainerID uint32
	HostID      uint32
	Size        uint32
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

// podCheckpointVersion is the version of the Pod checkpoint format.
const podCheckpointVersion = 1

// uniqueName is kubelet's unique pod name: one pod per name at a time.
func (c PodConfig) uniqueName() string {
	return c.Name + "_" + c.Namespace + "_" + c.UID + "_" + strconv.FormatUint(uint64(c.Attempt), 10)
}
