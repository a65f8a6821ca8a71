package sandbox

import (
	"context"
	"io"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/cradle-runtime/cradle/pkg/sandbox/cgroup"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container is a container as the engine keeps it: checkpointed on every
// change. Its CRI config is kept whole: the spec is built from it, and
// ContainerStatus reports from it.
type Container struct {
	ID         string
	PodID      string
	Config     *runtime.ContainerConfig
	ImageID    string
	ImageRef   string // the reference the container was created from
	State      ContainerState
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	Reason     string
	Message    string
	Pid        int
	StopSignal string                // e.g. SIGTERM: the config's, else the image's, else SIGTERM
	CgroupPath string                // the container's cgroup, from its spec
	Resources  *specs.LinuxResources // its limits as applied
	Bundle     string                // <state>/containers/<id>: config.json, rootfs/
	LogPath    string                // absolute; "" when kubelet asks for no log
	User       specs.User            // the identity its process runs as
	// ImageVolumes maps the index of each image volume in Config.Mounts to
	// the ID of the image mounted there.
	ImageVolumes map[int]string `json:",omitempty"`
	// RestoreImages, for a container created from a checkpoint archive,
	// is the directory (in its bundle) of the archive's CRIU images:
	// StartContainer restores them instead of starting a new process.
	RestoreImages string `json:",omitempty"`

	targetPID string // while it is created: the PID namespace of the container it targets
}

// Rootfs is where the container's root filesystem is mounted.
func (c *Container) Rootfs() string { return c.Bundle + "/rootfs" }

const containerCheckpointVersion = 1

// ImageInfo is what the engine needs of an image.
type ImageInfo struct {
	ID     string
	Config ocispec.ImageConfig
	// Annotations are the image manifest's (and its index's).
	Annotations map[string]string
}

// Images is the image seam (pkg/storage behind an adapter).
type Images interface {
	Resolve(ctx context.Context, ref string) (ImageInfo, error)
	PrepareRootfs(ctx context.Context, key, image string) ([]mount.Mount, error)
	// PrepareView makes a read-only snapshot of image named key (an image
	// volume); RemoveRootfs removes it.
	PrepareView(ctx context.Context, key, image string) ([]mount.Mount, error)
	RemoveRootfs(ctx context.Context, key string) error
	// RootfsUsage measures the writable layer of the rootfs named key.
	RootfsUsage(ctx context.Context, key string) (FsUsage, error)
	// ReadLayers hands fn the image's layers in order, each as its
	// uncompressed tar stream (a checkpoint image's files).
	ReadLayers(ctx context.Context, image string, fn func(io.Reader) error) error
}

// ExitStatus is how a container process ended.
type ExitStatus struct {
	Code       int32
	FinishedAt time.Time
	OOMKilled  bool
}

// ProcessState is what the runtime says of a container's process.
type ProcessState struct {
	Status ProcessStatus
	Exit   ExitStatus // when Exited
}

// ProcessStatus is where a container's process is, as its runtime sees it.
type ProcessStatus int

// Process statuses.
const (
	// ProcessUnsure: it exists and has not exited, but the runtime cannot
	// tell created from started (a microVM's agent).
	ProcessUnsure ProcessStatus = iota
	ProcessCreated
	ProcessRunning
	ProcessExited
)

// ExecResult is the outcome of ExecSync.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}

// TerminalSize is a terminal's size in characters.
type TerminalSize struct {
	Width, Height uint16
}

// Relay passes what arrives on in, converted, to the returned channel
// until in closes or ctx ends (then it closes that channel). It carries
// terminal sizes from one layer's type to the next.
func Relay[T, U any](ctx context.Context, in <-chan T, conv func(T) U) <-chan U {
	if in == nil {
		return nil
	}
	out := make(chan U)
	go func() {
		defer close(out)
		for {
			select {
			case v, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- conv(v):
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// ExecOptions describe a process to run in a running container, and its
// streams.
type ExecOptions struct {
	Cmd            []string
	Stdin          io.Reader // nil: none
	Stdout, Stderr io.Writer // nil discards; with TTY all output goes to Stdout
	TTY            bool      // a pseudo-terminal
	Resize         <-chan TerminalSize
	Timeout        time.Duration // 0: until ctx ends
}

// AttachOptions describe a client of a running container's stdio.
type AttachOptions struct {
	Stdin          io.Reader // nil: none; ignored unless the container has stdin
	Stdout, Stderr io.Writer // nil discards
	Resize         <-chan TerminalSize
}

// GuestCgroups is implemented by container backends whose containers'
// cgroups are not the host's (a microVM's guest): the engine reads and
// updates them through the backend instead of Cgroups.
type GuestCgroups interface {
	// ContainerCgroupStats reads c's cgroup; NotFound when it has none.
	ContainerCgroupStats(ctx context.Context, pod *Pod, c *Container) (cgroup.Stats, ProcessCounts, error)
	// UpdateContainerCgroup applies res to c's cgroup; limits beyond what
	// the sandbox can give are InvalidArgument.
	UpdateContainerCgroup(ctx context.Context, pod *Pod, c *Container, res *specs.LinuxResources) error
	// FitsPod refuses, InvalidArgument, pod resources beyond what the
	// sandbox has (its VM's memory and vCPUs).
	FitsPod(pod *Pod, res *specs.LinuxResources) error
}

// ContainerBackend is the container half of a Backend.
type ContainerBackend interface {
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
}

// ExitReleaser is implemented by container backends whose containers'
// runtime state, and rootfs mount, can go as soon as their exit is
// recorded, before RemoveContainer (containerd deletes its task at exit
// too): an exited container needs neither for its status, logs or
// writable-layer usage.
type ExitReleaser interface {
	// ReleaseExited deletes the runtime state of c, which has exited
	// (DeleteContainer's work, done early); idempotent.
	ReleaseExited(ctx context.Context, pod *Pod, c *Container) error
}

// Checkpointer is implemented by container backends that checkpoint and
// restore containers' processes (CRIU through the OCI runtime).
type Checkpointer interface {
	// CheckpointContainer writes the CRIU images of c's processes into
	// imageDir (CRIU's log and work files into workDir) and leaves them
	// running.
	CheckpointContainer(ctx context.Context, pod *Pod, c *Container, imageDir, workDir string) error
	// RestoreContainer makes c running from the CRIU images in
	// c.RestoreImages, in place of StartContainer, and returns its pid.
	RestoreContainer(ctx context.Context, pod *Pod, c *Container) (pid int, err error)
}
