package guest

import (
	"context"
	"fmt"
	"net"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// The Agent service's container, sandbox and network calls and the
// process and port streams: checked and handed to the Runtime.

// runtime is the container runtime, FailedPrecondition without one (a
// Service made for Health alone).
func (s *Service) runtime() (*Runtime, error) {
	if s.Runtime == nil {
		return nil, fmt.Errorf("the agent has no container runtime: %w", errdefs.ErrFailedPrecondition)
	}
	return s.Runtime, nil
}

func (s *Service) SetupSandbox(_ context.Context, req *api.SetupSandboxRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.SetupSandbox(req)
}

func (s *Service) SetupNetwork(_ context.Context, req *api.SetupNetworkRequest) (*api.Empty, error) {
	return &api.Empty{}, SetupNetwork(req)
}

func (s *Service) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return rt.Create(ctx, req)
}

func (s *Service) StartContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.Start(ctx, req.Id)
}

func (s *Service) SignalContainer(ctx context.Context, req *api.SignalContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.Signal(ctx, req.Id, unix.Signal(req.Signal), req.All)
}

func (s *Service) WaitContainer(ctx context.Context, req *api.ContainerRequest) (*api.ContainerExit, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return rt.Wait(ctx, req.Id)
}

func (s *Service) ContainerState(_ context.Context, req *api.ContainerRequest) (*api.ContainerStateResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return rt.State(req.Id)
}

func (s *Service) RemoveContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.Remove(ctx, req.Id)
}

func (s *Service) UpdateContainer(ctx context.Context, req *api.UpdateContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.Update(ctx, req.Id, req.Resources)
}

func (s *Service) ReopenLog(_ context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.ReopenLog(req.Id)
}

func (s *Service) Stats(_ context.Context, req *api.StatsRequest) (*api.StatsResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return rt.Stats(req.Ids)
}

func (s *Service) ServeExec(ctx context.Context, conn net.Conn, req *api.ExecRequest) {
	rt, err := s.runtime()
	if err != nil {
		(&frameWriter{w: conn}).fail(err)
		_ = conn.Close()
		return
	}
	rt.ServeExec(ctx, conn, req)
}

func (s *Service) ServeAttach(ctx context.Context, conn net.Conn, req *api.AttachRequest) {
	rt, err := s.runtime()
	if err != nil {
		(&frameWriter{w: conn}).fail(err)
		_ = conn.Close()
		return
	}
	rt.ServeAttach(ctx, conn, req)
}

func (s *Service) ServePort(ctx context.Context, conn net.Conn, req *api.PortForwardRequest) {
	ServePort(ctx, conn, req)
}
