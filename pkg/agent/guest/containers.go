package guest

import (
	"context"
	"fmt"
	"net"

	"github.com/containerd/errdefs"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// Placeholder until the in-guest container runtime lands (this branch's
// next commit): every container RPC answers NotImplemented.

func notYet(what string) error { return fmt.Errorf("%s in the guest: %w", what, errdefs.ErrNotImplemented) }

func (s *Service) SetupSandbox(context.Context, *api.SetupSandboxRequest) (*api.Empty, error) {
	return nil, notYet("sandbox setup")
}
func (s *Service) SetupNetwork(context.Context, *api.SetupNetworkRequest) (*api.Empty, error) {
	return nil, notYet("network setup")
}
func (s *Service) CreateContainer(context.Context, *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	return nil, notYet("containers")
}
func (s *Service) StartContainer(context.Context, *api.ContainerRequest) (*api.Empty, error) {
	return nil, notYet("containers")
}
func (s *Service) SignalContainer(context.Context, *api.SignalContainerRequest) (*api.Empty, error) {
	return nil, notYet("containers")
}
func (s *Service) WaitContainer(context.Context, *api.ContainerRequest) (*api.ContainerExit, error) {
	return nil, notYet("containers")
}
func (s *Service) ContainerState(context.Context, *api.ContainerRequest) (*api.ContainerStateResponse, error) {
	return nil, notYet("containers")
}
func (s *Service) RemoveContainer(context.Context, *api.ContainerRequest) (*api.Empty, error) {
	return nil, notYet("containers")
}
func (s *Service) UpdateContainer(context.Context, *api.UpdateContainerRequest) (*api.Empty, error) {
	return nil, notYet("containers")
}
func (s *Service) ReopenLog(context.Context, *api.ContainerRequest) (*api.Empty, error) {
	return nil, notYet("containers")
}
func (s *Service) Stats(context.Context, *api.StatsRequest) (*api.StatsResponse, error) {
	return nil, notYet("stats")
}
func (s *Service) ServeExec(_ context.Context, conn net.Conn, _ *api.ExecRequest) { _ = conn.Close() }
func (s *Service) ServeAttach(_ context.Context, conn net.Conn, _ *api.AttachRequest) {
	_ = conn.Close()
}
func (s *Service) ServePort(_ context.Context, conn net.Conn, _ *api.PortForwardRequest) { _ = conn.Close() }
