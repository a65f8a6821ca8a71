package sandbox

import (
	"context"
	"net"

	"github.com/cradle-runtime/cradle/pkg/sandbox/cgroup"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Backend makes the sandboxes of one kind real: namespace+cgroup pods run
// by an OCI runtime (nsbox), or microVMs (vmbox, Step 4). Everything else
// (IDs, names, state machines, checkpoints, network, cgroups, pod files)
// is the engine's and shared by every kind. Container methods join as the
// container runtime lands.
type Backend interface {
	// StartPod makes what holds the pod's non-network namespaces and its
	// /dev/shm, filling pod.NS and pod.Shm. pod.NetNS and pod.Dir exist.
	StartPod(ctx context.Context, pod *Pod) error
	// StopPod stops every process of the pod. Idempotent.
	StopPod(ctx context.Context, pod *Pod) error
	// DeletePod releases what StartPod made, from the pod's fields alone
	// (after a crash the backend may have no memory of it). Idempotent.
	DeletePod(ctx context.Context, pod *Pod) error
	// DialPort opens a TCP connection to port on the pod's own loopback,
	// from inside the pod's network (port-forward). Nothing listening is
	// an error wrapping ECONNREFUSED.
	DialPort(ctx context.Context, pod *Pod, port int32) (net.Conn, error)
}

// NetworkJoiner is implemented by backends whose sandbox joins the pod
// network itself once it is set up (a VM wires its NIC to the pod's eth0
// and configures the guest): called after Network.Setup, with pod.IPs set.
// What it makes is released by DeletePod.
type NetworkJoiner interface {
	JoinNetwork(ctx context.Context, pod *Pod) error
}

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

// Cgroups is the cgroup seam (pkg/sandbox/cgroup's Manager).
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
	UpdatePod(ctx context.Context, pod *Pod, res, overhead *runtime.LinuxContainerResources) error
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
func (noNRI) UpdatePod(context.Context, *Pod, *runtime.LinuxContainerResources, *runtime.LinuxContainerResources) error {
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
