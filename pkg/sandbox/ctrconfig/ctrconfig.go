// Package ctrconfig holds what a container is made from, as the engine
// keeps it: its config ([Container]), and what its spec takes from its
// pod's ([Pod]). pkg/cri translates the CRI's messages into these types once,
// at the edge; the engine (pkg/sandbox), the spec builder (oci), NRI and the
// backends read them, and checkpoints hold them. Plain data, no behaviour
// beyond copying: a leaf every layer may import.
package ctrconfig

import (
	"maps"
	"slices"
	"strconv"
)

// Container is a container's config (the CRI's ContainerConfig).
type Container struct {
	Name    string
	Attempt uint32
	// Image is the image the container runs, as kubelet resolved it;
	// UserSpecifiedImage the reference the pod spec gave.
	Image              string
	UserSpecifiedImage string `json:",omitempty"`
	Command            []string
	Args               []string
	WorkingDir         string
	Env                []EnvVar // in order: a later key replaces an earlier one
	Mounts             []Mount
	Devices            []Device
	CDIDevices         []string // fully-qualified CDI device names
	Labels             map[string]string
	Annotations        map[string]string
	// LogPath is relative to the pod's log directory ("" none given).
	LogPath   string
	Stdin     bool
	StdinOnce bool
	TTY       bool
	// StopSignal is a signal's name ("SIGUSR1"); "" leaves it to the
	// image, else SIGTERM.
	StopSignal string
	// Resources are the container's Linux resources; nil when none given.
	Resources *Resources
	Security  Security
}

// EnvVar is an environment variable.
type EnvVar struct {
	Key   string
	Value string
}

// Mount is a volume: a bind mount of a host path, or an image volume.
type Mount struct {
	ContainerPath     string
	HostPath          string
	Readonly          bool
	RecursiveReadOnly bool `json:",omitempty"`
	SELinuxRelabel    bool `json:",omitempty"`
	Propagation       Propagation
	UIDMappings       []IDMapping `json:",omitempty"`
	GIDMappings       []IDMapping `json:",omitempty"`
	// Image names the image an image volume mounts ("" for a bind
	// mount); ImageSubPath the directory of it to mount.
	Image        string   `json:",omitempty"`
	ImageSubPath string   `json:",omitempty"`
	Options      []string `json:",omitempty"` // extra mount options kubelet asks for
}

// IsImageVolume says whether the mount is an image volume.
func (m Mount) IsImageVolume() bool { return m.Image != "" }

// Propagation is a mount's propagation (the CRI's MountPropagation, same
// values).
type Propagation int

// Mount propagations.
const (
	PropagationPrivate Propagation = iota
	PropagationHostToContainer
	PropagationBidirectional
)

var propagationNames = [...]string{"PROPAGATION_PRIVATE", "PROPAGATION_HOST_TO_CONTAINER", "PROPAGATION_BIDIRECTIONAL"}

func (p Propagation) String() string {
	if p >= 0 && int(p) < len(propagationNames) {
		return propagationNames[p]
	}
	return "Propagation(" + strconv.Itoa(int(p)) + ")"
}

// Device is a host device node given to the container.
type Device struct {
	ContainerPath string
	HostPath      string
	Permissions   string // cgroup access: r, w, m; "" all three
}

// Resources are Linux resources (the CRI's LinuxContainerResources, same
// units): zero fields are not set.
type Resources struct {
	CPUPeriod       int64
	CPUQuota        int64
	CPUShares       int64
	MemoryLimit     int64 // bytes
	MemorySwapLimit int64 // bytes, memory included
	OOMScoreAdj     int64
	CpusetCPUs      string
	CpusetMems      string
	HugepageLimits  []HugepageLimit   `json:",omitempty"`
	Unified         map[string]string `json:",omitempty"` // cgroup v2 files
}

// HugepageLimit limits the huge pages of one size ("2MB") to Limit bytes.
type HugepageLimit struct {
	PageSize string
	Limit    uint64
}

// Clone is a deep copy of r (nil for nil).
func (r *Resources) Clone() *Resources {
	if r == nil {
		return nil
	}
	out := *r
	out.HugepageLimits = slices.Clone(r.HugepageLimits)
	out.Unified = maps.Clone(r.Unified)
	return &out
}

// NamespaceMode says whose namespace a container or pod uses (the CRI's
// NamespaceMode, same values).
type NamespaceMode int

// Namespace modes.
const (
	NamespacePod NamespaceMode = iota // the pod's own, shared by its containers
	NamespaceContainer
	NamespaceNode   // the host's
	NamespaceTarget // another container's (ephemeral containers' PID namespace)
)

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

var namespaceModeNames = [...]string{"POD", "CONTAINER", "NODE", "TARGET"}

func (m NamespaceMode) String() string {
	if m >= 0 && int(m) < len(namespaceModeNames) {
		return namespaceModeNames[m]
	}
	return "NamespaceMode(" + strconv.Itoa(int(m)) + ")"
}
