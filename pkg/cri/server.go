// Package cri is cradle's gRPC edge: the CRI v1 RuntimeService and
// ImageService. It validates requests and translates between CRI messages
// and the engine's types; it holds no state of its own. RPCs the engine does
// not implement yet answer Unimplemented (from the embedded Unimplemented
// servers).
package cri

import (
	"context"
	"log/slog"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/metrics"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Version is cradle's version, set by the build.
type Version struct {
	Version string // e.g. v0.1.0
	Commit  string
}

// Network is what the CRI edge asks of the pod network directly.
type Network interface {
	Ready(ctx context.Context) (ok bool, reason, message string)
	SetPodSubnets(ctx context.Context, cidrs string) error
	// Mode is the network new pods get (builtin or cni), and why.
	Mode() (mode, why string)
}

// Deps is what the CRI servers translate to.
type Deps struct {
	Config  config.Config
	Images  *storage.Store
	Network Network
	Pods    *sandbox.Manager
	// RuntimeReady says whether containers can run (nil: always).
	RuntimeReady func() (ok bool, reason, message string)
	Handlers     []sandbox.Handler
	CgroupDriver string
	Version      Version
	Logger       *slog.Logger
	Metrics      *metrics.Metrics // nil when metrics are off
	Streams      Streams          // nil: Exec, Attach and PortForward answer Unimplemented
}

// Register adds the RuntimeService and ImageService to g.
func Register(g *grpc.Server, d Deps) {
	runtime.RegisterRuntimeServiceServer(g, &runtimeServer{deps: d})
	runtime.RegisterImageServiceServer(g, &imageServer{deps: d})
}

// runtimeServer implements runtime.RuntimeServiceServer.
type runtimeServer struct {
	runtime.UnimplementedRuntimeServiceServer
	deps Deps
}

// imageServer implements runtime.ImageServiceServer.
type imageServer struct {
	runtime.UnimplementedImageServiceServer
	deps Deps
}
