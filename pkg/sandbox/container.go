package sandbox

import (
	"context"
	"io"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Container is a container as the engine keeps it: checkpointed on every
// change. Its config is kept whole: the spec is built from it, and
// ContainerStatus reports from it.
type Container struct {
	ID         string
	PodID      string
	Config     ctrconfig.Container
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
