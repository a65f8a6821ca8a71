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

// SetupSandbox sets the pod up in the guest: clock, hostname, sysctls, shared directory.
func (s *Service) SetupSandbox(_ context.Context, req *api.SetupSandboxRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.SetupSandbox(req)
}

// SetupNetwork gives the guest NIC the pod's eth0 identity: MAC, MTU, addresses, routes.
func (s *Service) SetupNetwork(_ context.Context, req *api.SetupNetworkRequest) (*api.Empty, error) {
	return &api.Empty{}, SetupNetwork(req)
}

// CreateContainer makes a container from its OCI spec without starting it.
func (s *Service) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return rt.Create(ctx, req)
}

// StartContainer starts a created container.
func (s *Service) StartContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.Start(ctx, req.Id)
}

// SignalContainer sends a signal to a container's processes.
func (s *Service) SignalContainer(ctx context.Context, req *api.SignalContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.Signal(ctx, req.Id, unix.Signal(req.Signal), req.All)
}

// WaitContainer blocks until the container exits and returns its exit.
func (s *Service) WaitContainer(ctx context.Context, req *api.ContainerRequest) (*api.ContainerExit, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return rt.Wait(ctx, req.Id)
}

// ContainerState says, without blocking, whether the container runs or how it exited.
func (s *Service) ContainerState(_ context.Context, req *api.ContainerRequest) (*api.ContainerStateResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return rt.State(req.Id)
}

// RemoveContainer releases the container's runtime state in the guest.
func (s *Service) RemoveContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.Remove(ctx, req.Id)
}

// UpdateContainer applies new resource limits to the container's cgroup.
func (s *Service) UpdateContainer(ctx context.Context, req *api.UpdateContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.Update(ctx, req.Id, req.Resources)
}

// ReopenLog has the container's log written to a fresh file (after kubelet rotated it).
func (s *Service) ReopenLog(_ context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, rt.ReopenLog(req.Id)
}

// Stats reads the container's cgroup figures.
func (s *Service) Stats(_ context.Context, req *api.StatsRequest) (*api.StatsResponse, error) {
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	return rt.Stats(req.Ids)
}

// ServeExec runs a process in the container over conn, its stdio framed.
func (s *Service) ServeExec(ctx context.Context, conn net.Conn, req *api.ExecRequest) {
	rt, err := s.runtime()
	if err != nil {
		(&frameWriter{w: conn}).fail(err)
		_ = conn.Close()
		return
	}
	rt.ServeExec(ctx, conn, req)
}

// ServeAttach joins conn to the stdio of the container's process.
func (s *Service) ServeAttach(ctx context.Context, conn net.Conn, req *api.AttachRequest) {
	rt, err := s.runtime()
	if err != nil {
		(&frameWriter{w: conn}).fail(err)
		_ = conn.Close()
		return
	}
	rt.ServeAttach(ctx, conn, req)
}

// ServePort joins conn to a TCP port on the guest's loopback.
func (s *Service) ServePort(ctx context.Context, conn net.Conn, req *api.PortForwardRequest) {
	ServePort(ctx, conn, req)
}
