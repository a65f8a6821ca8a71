package sandbox

import (
	"context"
	"net"

	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Backend makes the sandboxes of one kind real: namespace+cgroup pods run
// by an OCI runtime (nsbox), or microVMs (vmbox). Everything else (IDs,
// names, state machines, checkpoints, network, pod cgroups, pod files) is
// the engine's and shared by every kind; what differs by kind is a method
// here, which each backend implements its own way. Every backend has every
// method: the engine asks no backend what it can do.
type Backend interface {
	PodSandbox
	ContainerRuntime
	ContainerCgroups
}

// PodSandbox is the part of a Backend that holds a pod: what its
// containers join.
type PodSandbox interface {
	// StartPod makes what holds the pod's non-network namespaces and its
	// /dev/shm, filling pod.NS and pod.Shm. pod.NetNS and pod.Dir exist.
	StartPod(ctx context.Context, pod *Pod) error
	// JoinNetwork is called after Network.Setup, with pod.IPs set, for a
	// pod with a network namespace of its own: a sandbox that must join
	// the pod network itself (a VM wires its NIC to the pod's eth0 and
	// configures the guest) does it here; what it makes is released by
	// DeletePod.
	JoinNetwork(ctx context.Context, pod *Pod) error
	// StopPod stops every process of the pod. Idempotent.
	StopPod(ctx context.Context, pod *Pod) error
	// DeletePod releases what StartPod made, from the pod's fields alone
	// (after a crash the backend may have no memory of it). Idempotent.
	DeletePod(ctx context.Context, pod *Pod) error
	// DialPort opens a TCP connection to port on the pod's own loopback,
	// from inside the pod's network (port-forward). Nothing listening is
	// an error wrapping ECONNREFUSED.
	DialPort(ctx context.Context, pod *Pod, port int32) (net.Conn, error)
	// FitPodResources refuses, InvalidArgument, pod resources (overhead
	// included) beyond what the sandbox can give, and says where they
	// apply.
	FitPodResources(pod *Pod, res *specs.LinuxResources) (PodResize, error)
}

// ContainerRuntime is the part of a Backend that runs a pod's containers.
type ContainerRuntime interface {
	// CreateContainer makes the container from spec (its root is
	// c.Rootfs(), already mounted) without starting it; it returns the pid.
	CreateContainer(ctx context.Context, pod *Pod, c *Container, spec *specs.Spec) (pid int, err error)
	StartContainer(ctx context.Context, pod *Pod, c *Container) error
	// SignalContainer sends sig to the container's processes.
	SignalContainer(ctx context.Context, pod *Pod, c *Container, sig int) error
	// WaitContainer blocks until the container exits (or ctx ends).
	WaitContainer(ctx context.Context, pod *Pod, c *Container) (ExitStatus, error)
	// ContainerState asks the runtime, without blocking, where the
	// container's process is; a container the runtime does not know is
	// NotFound.
	ContainerState(ctx context.Context, pod *Pod, c *Container) (ProcessState, error)
	// DeleteContainer releases the container's runtime state; idempotent.
	DeleteContainer(ctx context.Context, pod *Pod, c *Container) error
	// ReleaseExited is called once c's exit is recorded, before
	// RemoveContainer: it frees what only a live container needs, where
	// the sandbox allows it (containerd deletes its task at exit too),
	// for an exited container needs neither its runtime state nor its
	// rootfs mount for its status, logs or writable-layer usage.
	// Idempotent; RemoveContainer does DeleteContainer's work all the
	// same.
	ReleaseExited(ctx context.Context, pod *Pod, c *Container) error
	// Exec runs o.Cmd in the running container with the container's
	// environment, user and working directory, and returns its exit code.
	// It kills the process when o.Timeout passes or ctx ends (the client
	// went away), and then returns an error wrapping why.
	Exec(ctx context.Context, pod *Pod, c *Container, o ExecOptions) (int32, error)
	// Attach copies between o and the stdio of the container's process
	// (from now on) until that exits or ctx ends; detaching leaves it
	// running.
	Attach(ctx context.Context, pod *Pod, c *Container, o AttachOptions) error
	ReopenLog(ctx context.Context, pod *Pod, c *Container) error
	// CheckpointContainer writes the CRIU images of c's processes into
	// imageDir (CRIU's log and work files into workDir) and leaves them
	// running; a sandbox that cannot is FailedPrecondition, saying why.
	CheckpointContainer(ctx context.Context, pod *Pod, c *Container, imageDir, workDir string) error
	// RestoreContainer makes c running from the CRIU images in
	// c.RestoreImages, in place of StartContainer, and returns its pid; a
	// sandbox that cannot is FailedPrecondition.
	RestoreContainer(ctx context.Context, pod *Pod, c *Container) (pid int, err error)
}

// ContainerCgroups is the part of a Backend that limits and measures a
// pod's containers (sandbox.HostCgroups where they are the host's).
type ContainerCgroups interface {
	// ContainerControllers lists the cgroup controllers that can hold the
	// limits of the pod's containers; nil: every one.
	ContainerControllers(pod *Pod) (map[string]bool, error)
	// ContainerCgroupStats reads c's cgroup; NotFound when it has none.
	// The process counts are nil where they cannot be read.
	ContainerCgroupStats(ctx context.Context, pod *Pod, c *Container) (cgroup.Stats, *ProcessCounts, error)
	// UpdateContainerCgroup applies res to c's cgroup; limits beyond what
	// the sandbox can give are InvalidArgument.
	UpdateContainerCgroup(ctx context.Context, pod *Pod, c *Container, res *specs.LinuxResources) error
}

// PodResize says where a ready pod's new resources apply
// (Backend.FitPodResources).
type PodResize int

const (
	// ResizeHostCgroup says the pod's cgroup on the host holds them; the
	// engine updates it (when it made it) and records them in the pod's
	// config.
	ResizeHostCgroup PodResize = iota
	// ResizeWithinSandbox says the sandbox's bounds were fixed when it started
	// (a VM's memory and vCPUs); the pod shrinks and grows within them,
	// its containers' limits (which kubelet resizes one by one) holding
	// inside it. The host cgroup and the pod's config keep what the
	// sandbox was sized from.
	ResizeWithinSandbox
)

// Network is the pod network seam (pkg/network behind an adapter).
type Network interface {
	// NewNetNS makes and pins the pod's network namespace.
	NewNetNS(podID string) (path string, err error)
	// RemoveNetNS releases it; a missing one is not an error.
	RemoveNetNS(path string) error
	// Setup wires the pod's netns into the pod network and returns its IPs.
	Setup(ctx context.Context, pod *Pod) (ips []string, err error)
	// Teardown unwires it, from persisted data alone; idempotent.
	Teardown(ctx context.Context, podID string) error
	// Reconcile removes the network state of every pod not in live.
	Reconcile(ctx context.Context, live []string) error
	// InterfaceStats reads the counters of the interfaces in the network
	// namespace at netns.
	InterfaceStats(ctx context.Context, netns string) ([]InterfaceStats, error)
}

// Taps is the pod network's seam for a backend whose sandbox's NIC is a
// tap device in the pod's network namespace (a VM's): made before the VM
// starts, wired to the pod's eth0 once Network.Setup has made it (in
// Backend.JoinNetwork), detached when the pod is deleted. The adapter
// that implements Network implements it too.
type Taps interface {
	// CreateTap makes a persistent tap device, up and wired to nothing,
	// in the network namespace at netns.
	CreateTap(netns, name string) error
	// WireTap joins the tap to the pod's eth0 and says what the guest NIC
	// takes over from eth0.
	WireTap(netns, name string) (Tap, error)
	// DetachTap undoes CreateTap and WireTap; a missing tap wraps
	// os.ErrNotExist.
	DetachTap(netns, name string) error
}

// Tap is a tap wired to the pod's eth0: the guest NIC takes eth0's MAC,
// MTU, addresses (CIDR) and routes, so that peers see no change.
type Tap struct {
	Name   string
	MTU    int
	MAC    net.HardwareAddr
	Addrs  []string
	Routes []TapRoute
}

// TapRoute is a route of the pod's namespace, for the guest.
type TapRoute struct {
	Dst string // CIDR; "" is the default route
	Gw  string // "": on-link
}

// Cgroups is the cgroup seam (pkg/cgroup's Manager).
type Cgroups interface {
	Create(path string, res *specs.LinuxResources) error
	Update(path string, res *specs.LinuxResources) error
	AddProcess(path string, pid int) error
	Delete(ctx context.Context, path string) error
	// Stats reads the cgroup's figures; a missing cgroup is NotFound.
	Stats(path string) (cgroup.Stats, error)
	// Processes lists the pids in the cgroup and below it; a missing
	// cgroup is NotFound.
	Processes(path string) ([]int, error)
	// Controllers lists the controllers that can hold limits of cgroups
	// made below path.
	Controllers(path string) (map[string]bool, error)
}

// NRI relays the pod and container lifecycle to Node Resource Interface
// plugins (pkg/nri). RunPod, CreateContainer and StartContainer may refuse:
// their error fails the request, and CreateContainer may adjust the spec;
// the others only notify. Options.NRI nil: no plugins.
type NRI interface {
	RunPod(ctx context.Context, pod *Pod) error
	StopPod(ctx context.Context, pod *Pod)
	RemovePod(ctx context.Context, pod *Pod)
	// UpdatePod is told a pod's new resources before they apply (an
	// error refuses them); PostUpdatePod after.
	UpdatePod(ctx context.Context, pod *Pod, res, overhead *ctrconfig.Resources) error
	PostUpdatePod(ctx context.Context, pod *Pod)
	CreateContainer(ctx context.Context, pod *Pod, c *Container, spec *specs.Spec) error
	PostCreateContainer(ctx context.Context, pod *Pod, c *Container)
	StartContainer(ctx context.Context, pod *Pod, c *Container) error
	PostStartContainer(ctx context.Context, pod *Pod, c *Container)
	// StopContainer is told once per container, however it stopped.
	StopContainer(ctx context.Context, pod *Pod, c *Container)
	RemoveContainer(ctx context.Context, pod *Pod, c *Container)
	// BlockSync holds back a newly connected plugin's synchronization
	// until unblock, while a pod or container is made: it is then either
	// in the plugin's sync set or reaches it as an event.
	BlockSync() (unblock func())
}

// noNRI is the NRI of a node without plugins.
type noNRI struct{}

func (noNRI) RunPod(context.Context, *Pod) error { return nil }
func (noNRI) StopPod(context.Context, *Pod)      {}
func (noNRI) RemovePod(context.Context, *Pod)    {}
func (noNRI) UpdatePod(context.Context, *Pod, *ctrconfig.Resources, *ctrconfig.Resources) error {
	return nil
}
func (noNRI) PostUpdatePod(context.Context, *Pod)                                  {}
func (noNRI) CreateContainer(context.Context, *Pod, *Container, *specs.Spec) error { return nil }
func (noNRI) PostCreateContainer(context.Context, *Pod, *Container)                {}
func (noNRI) StartContainer(context.Context, *Pod, *Container) error               { return nil }
func (noNRI) PostStartContainer(context.Context, *Pod, *Container)                 {}
func (noNRI) StopContainer(context.Context, *Pod, *Container)                      {}
func (noNRI) RemoveContainer(context.Context, *Pod, *Container)                    {}
func (noNRI) BlockSync() func()                                                    { return func() {} }
