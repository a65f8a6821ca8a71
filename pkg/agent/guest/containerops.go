package guest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

func (s *Service) StartContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	c, err := s.get(req.GetId())
	if err != nil {
		return nil, err
	}
	if err := s.runtime(ctx, c.bundle, "start", c.id); err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.id, err)
	}
	return &api.Empty{}, nil
}

// SignalContainer signals the container's init (all: every process of
// it); a container that has exited is not an error.
func (s *Service) SignalContainer(ctx context.Context, req *api.SignalContainerRequest) (*api.Empty, error) {
	c, err := s.get(req.GetId())
	if err != nil {
		return nil, err
	}
	if exited(c) {
		return &api.Empty{}, nil
	}
	args := []string{"kill"}
	if req.All {
		args = append(args, "--all")
	}
	if err := s.runtime(ctx, c.bundle, append(args, c.id, strconv.Itoa(int(req.Signal)))...); err != nil {
		if exited(c) {
			return &api.Empty{}, nil
		}
		// The runtime refuses to signal a container it sees stopped while
		// the reaper has not run yet: signal the init directly.
		if kerr := unix.Kill(c.pid, unix.Signal(req.Signal)); kerr != nil {
			return nil, fmt.Errorf("signal container %s: %w", c.id, err)
		}
	}
	return &api.Empty{}, nil
}

func exited(c *container) bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

func (s *Service) WaitContainer(ctx context.Context, req *api.ContainerRequest) (*api.ContainerExit, error) {
	c, err := s.get(req.GetId())
	if err != nil {
		return nil, err
	}
	select {
	case <-c.exited:
		return c.exit, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Service) ContainerState(_ context.Context, req *api.ContainerRequest) (*api.ContainerStateResponse, error) {
	c, err := s.get(req.GetId())
	if err != nil {
		return nil, err
	}
	if exited(c) {
		return &api.ContainerStateResponse{Pid: int32(c.pid), Exited: true, Exit: c.exit}, nil
	}
	return &api.ContainerStateResponse{Pid: int32(c.pid)}, nil
}

// RemoveContainer kills what is left of the container, has the runtime
// delete it and forgets it. Unknown ids are not an error.
func (s *Service) RemoveContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	c, err := s.get(req.GetId())
	if errdefs.IsNotFound(err) {
		return &api.Empty{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.runtime(ctx, c.bundle, "delete", "-f", c.id); err != nil {
		if _, serr := os.Stat(filepath.Join(s.runtimeRoot(), c.id)); serr == nil {
			return nil, fmt.Errorf("delete container %s: %w", c.id, err)
		}
	}
	c.closeIO()
	_ = os.RemoveAll(c.bundle)
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
	s.Log.Info("container removed", "container", c.id)
	return &api.Empty{}, nil
}

// UpdateContainer applies new limits with `crun update --resources`.
func (s *Service) UpdateContainer(ctx context.Context, req *api.UpdateContainerRequest) (*api.Empty, error) {
	c, err := s.get(req.GetId())
	if err != nil {
		return nil, err
	}
	f := filepath.Join(c.bundle, "resources.json")
	if err := os.WriteFile(f, req.GetResources(), 0o600); err != nil {
		return nil, err
	}
	if err := s.runtime(ctx, c.bundle, "update", "--resources", f, c.id); err != nil {
		return nil, fmt.Errorf("update container %s: %w", c.id, err)
	}
	return &api.Empty{}, nil
}

func (s *Service) ReopenLog(_ context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	c, err := s.get(req.GetId())
	if err != nil {
		return nil, err
	}
	if err := c.log.reopen(); err != nil {
		return nil, fmt.Errorf("reopen the log of container %s: %w", c.id, err)
	}
	return &api.Empty{}, nil
}
