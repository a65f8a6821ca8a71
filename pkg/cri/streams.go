package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Streams hands out the streaming server's single-use URLs
// (pkg/streaming).
type Streams interface {
	GetExec(*runtime.ExecRequest) (*runtime.ExecResponse, error)
	GetAttach(*runtime.AttachRequest) (*runtime.AttachResponse, error)
	GetPortForward(*runtime.PortForwardRequest) (*runtime.PortForwardResponse, error)
}

// Exec checks the container runs and returns the URL of an exec session.
func (s *runtimeServer) Exec(ctx context.Context, req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if s.deps.Streams == nil {
		return nil, fmt.Errorf("no streaming server: %w", errdefs.ErrNotImplemented)
	}
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("Exec needs a command: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.deps.Pods.RunningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	r := proto.CloneOf(req)
	r.ContainerId = c.ID // a prefix resolved now, not when the client comes
	return s.deps.Streams.GetExec(r)
}

// Attach checks the container runs and returns the URL of an attach
// session.
func (s *runtimeServer) Attach(ctx context.Context, req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	if s.deps.Streams == nil {
		return nil, fmt.Errorf("no streaming server: %w", errdefs.ErrNotImplemented)
	}
	c, err := s.deps.Pods.RunningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	r := proto.CloneOf(req)
	r.ContainerId = c.ID
	return s.deps.Streams.GetAttach(r)
}

// PortForward checks the pod is ready and returns the URL of a
// port-forward session.
func (s *runtimeServer) PortForward(ctx context.Context, req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	if s.deps.Streams == nil {
		return nil, fmt.Errorf("no streaming server: %w", errdefs.ErrNotImplemented)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port %d is outside 1..65535: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	p, err := s.deps.Pods.ReadyPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	r := proto.CloneOf(req)
	r.PodSandboxId = p.ID
	return s.deps.Streams.GetPortForward(r)
}
