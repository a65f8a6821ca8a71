package sandbox

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
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
}

// Rootfs is where the container's root filesystem is mounted.
func (c *Container) Rootfs() string { return c.Bundle + "/rootfs" }

const containerCheckpointVersion = 1

// ImageInfo is what the engine needs of an image.
type ImageInfo struct {
	ID     string
	Config ocispec.ImageConfig
}

// Images is the image seam (pkg/storage behind an adapter).
type Images interface {
	Resolve(ctx context.Context, ref string) (ImageInfo, error)
	PrepareRootfs(ctx context.Context, key, image string) ([]mount.Mount, error)
	RemoveRootfs(ctx context.Context, key string) error
	// RootfsUsage measures the writable layer of the rootfs named key.
	RootfsUsage(ctx context.Context, key string) (FsUsage, error)
}

// ExitStatus is how a container process ended.
type ExitStatus struct {
	Code       int32
	FinishedAt time.Time
	OOMKilled  bool
}

// ExecResult is the outcome of ExecSync.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
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
	// ContainerExited reports an exit that has happened, without blocking.
	ContainerExited(ctx context.Context, pod *Pod, c *Container) (ExitStatus, bool, error)
	// DeleteContainer releases the container's runtime state; idempotent.
	DeleteContainer(ctx context.Context, pod *Pod, c *Container) error
	ExecSync(ctx context.Context, pod *Pod, c *Container, cmd []string, timeout time.Duration) (ExecResult, error)
	ReopenLog(ctx context.Context, pod *Pod, c *Container) error
}
