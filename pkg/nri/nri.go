// Package nri makes cradle an NRI runtime (github.com/containerd/nri's
// adaptation): plugins that connect to its socket, or that it starts from
// its plugin directory, see the pod and container lifecycle, adjust a
// container before it is created, and update or evict containers after.
// It implements sandbox.NRI; the engine calls it at each step.
package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/adaptation"
	api "github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Config is the [nri] section.
type Config struct {
	SocketPath       string        // plugins connect here
	PluginPath       string        // plugins cradle starts itself ("" or missing: none)
	PluginConfigPath string        // their configuration drop-ins
	RegisterTimeout  time.Duration // a plugin's registration
	RequestTimeout   time.Duration // a plugin's answer to one event
}

// Engine is what plugins reach in the engine: the state they are
// synchronized with, and the updates and evictions they ask for.
type Engine interface {
	ListPods(sandbox.PodFilter) []sandbox.Pod
	ListContainers(sandbox.ContainerFilter) []sandbox.Container
	UpdateContainerResources(ctx context.Context, id string, res *ctrconfig.Resources) error
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
}

// Service relays the engine's lifecycle to NRI plugins.
type Service struct {
	a      *adaptation.Adaptation
	log    *slog.Logger
	engine Engine

	mu      sync.Mutex
	stopped map[string]bool // containers whose StopContainer event was sent
}

var _ sandbox.NRI = (*Service)(nil)

// New makes the service; Start opens its socket.
func New(cfg Config, name, version string, log *slog.Logger) (*Service, error) {
	if cfg.SocketPath == "" || !filepath.IsAbs(cfg.SocketPath) {
		return nil, fmt.Errorf("nri socket path %q must be absolute: %w", cfg.SocketPath, errdefs.ErrInvalidArgument)
	}
	s := &Service{log: log, stopped: map[string]bool{}}
	if cfg.RegisterTimeout > 0 {
		adaptation.SetPluginRegistrationTimeout(cfg.RegisterTimeout)
	}
	if cfg.RequestTimeout > 0 {
		adaptation.SetPluginRequestTimeout(cfg.RequestTimeout)
	}
	opts := []adaptation.Option{adaptation.WithSocketPath(cfg.SocketPath)}
	if cfg.PluginPath != "" {
		opts = append(opts, adaptation.WithPluginPath(cfg.PluginPath), adaptation.WithPluginConfigPath(cfg.PluginConfigPath))
	} else {
		opts = append(opts, adaptation.WithPluginPath("")) // none: it reads "" as a missing directory
	}
	a, err := adaptation.New(name, version, s.sync, s.update, opts...)
	if err != nil {
		return nil, err
	}
	s.a = a
	return s, nil
}

// Start starts the configured plugins and listens for others, which are
// synchronized with e: call it once e has recovered its state.
func (s *Service) Start(e Engine) error {
	s.engine = e
	return s.a.Start()
}

// Stop closes the socket and the plugins' connections.
func (s *Service) Stop() { s.a.Stop() }

// BlockSync holds back the synchronization of a plugin that connects now
// until unblock: a pod or container being made is then either in a new
// plugin's sync set or reaches it as an event, never lost.
func (s *Service) BlockSync() func() { return s.a.BlockPluginSync().Unblock }

// sync gives a newly connected plugin every pod and container, then applies
// the updates it asks for.
func (s *Service) sync(ctx context.Context, cb adaptation.SyncCB) error {
	pods := s.engine.ListPods(sandbox.PodFilter{})
	byID := make(map[string]*sandbox.Pod, len(pods))
	out := make([]*api.PodSandbox, 0, len(pods))
	for i := range pods {
		byID[pods[i].ID] = &pods[i]
		out = append(out, podSandbox(&pods[i]))
	}
	var ctrs []*api.Container
	for _, c := range s.engine.ListContainers(sandbox.ContainerFilter{}) {
		if _, ok := byID[c.PodID]; ok {
			ctrs = append(ctrs, container(&c, nil))
		}
	}
	updates, err := cb(ctx, out, ctrs)
	if err != nil {
		return err
	}
	_, err = s.update(ctx, updates)
	return err
}

// update applies container updates a plugin asked for on its own; it
// returns those that failed.
func (s *Service) update(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	var failed []*api.ContainerUpdate
	var errs []error
	for _, u := range updates {
		res := u.GetLinux().GetResources()
		if res == nil {
			continue
		}
		if err := s.engine.UpdateContainerResources(ctx, u.GetContainerId(), toResources(res)); err != nil {
			s.log.Warn("NRI plugin's container update failed", "container", u.GetContainerId(), "error", err)
			failed = append(failed, u)
			if !u.GetIgnoreFailure() {
				errs = append(errs, err)
			}
		}
	}
	return failed, errors.Join(errs...)
}

// evict stops the containers a plugin asked to evict.
func (s *Service) evict(ctx context.Context, evictions []*api.ContainerEviction) {
	for _, ev := range evictions {
		s.log.Info("NRI plugin evicts a container", "container", ev.GetContainerId(), "reason", ev.GetReason())
		if err := s.engine.StopContainer(ctx, ev.GetContainerId(), 0); err != nil {
			s.log.Warn("evict container", "container", ev.GetContainerId(), "error", err)
		}
	}
}

// RunPod lets plugins see the pod before it is Ready; a plugin's error
// fails RunPodSandbox.
func (s *Service) RunPod(ctx context.Context, pod *sandbox.Pod) error {
	if err := s.a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: podSandbox(pod)}); err != nil {
		return fmt.Errorf("NRI plugin refused the pod: %w", err)
	}
	return nil
}

// StopPod tells plugins the pod stopped (its containers are stopped, its
// sandbox not yet released).
func (s *Service) StopPod(ctx context.Context, pod *sandbox.Pod) {
	if err := s.a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: podSandbox(pod)}); err != nil {
		s.log.Warn("NRI StopPodSandbox", "pod", pod.ID, "error", err)
	}
}

// RemovePod tells plugins the pod is gone.
func (s *Service) RemovePod(ctx context.Context, pod *sandbox.Pod) {
	if err := s.a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: podSandbox(pod)}); err != nil {
		s.log.Warn("NRI RemovePodSandbox", "pod", pod.ID, "error", err)
	}
}

// UpdatePod lets plugins see a pod's new resources before they apply; a
// plugin's error refuses them.
func (s *Service) UpdatePod(ctx context.Context, pod *sandbox.Pod, res, overhead *ctrconfig.Resources) error {
	req := &api.UpdatePodSandboxRequest{Pod: podSandbox(pod), LinuxResources: fromResources(res)}
	if overhead != nil {
		req.OverheadLinuxResources = fromResources(overhead)
	}
	if _, err := s.a.UpdatePodSandbox(ctx, req); err != nil {
		return fmt.Errorf("NRI plugin refused the pod's resources: %w", err)
	}
	return nil
}

// PostUpdatePod tells plugins the pod's resources changed.
func (s *Service) PostUpdatePod(ctx context.Context, pod *sandbox.Pod) {
	if err := s.a.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: podSandbox(pod)}); err != nil {
		s.log.Warn("NRI PostUpdatePodSandbox", "pod", pod.ID, "error", err)
	}
}

// CreateContainer lets plugins adjust the container's spec before it is
// made, and applies the updates and evictions of other containers they
// ask for. A plugin's error fails CreateContainer.
func (s *Service) CreateContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, spec *specs.Spec) error {
	rsp, err := s.a.CreateContainer(ctx, &api.CreateContainerRequest{Pod: podSandbox(pod), Container: container(c, spec)})
	if err != nil {
		return fmt.Errorf("NRI plugin refused the container: %w", err)
	}
	if adj := rsp.GetAdjust(); adj != nil {
		g := nrigen.SpecGenerator(&specEditor{s: spec})
		if err := g.Adjust(adj); err != nil {
			return fmt.Errorf("apply NRI adjustment: %w: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	// Other containers' locks are not taken under this one's pod lock.
	if len(rsp.GetUpdate()) > 0 || len(rsp.GetEvict()) > 0 {
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_, _ = s.update(ctx, rsp.GetUpdate())
			s.evict(ctx, rsp.GetEvict())
		}()
	}
	return nil
}

// PostCreateContainer tells plugins the container exists.
func (s *Service) PostCreateContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) {
	if err := s.a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		s.log.Warn("NRI PostCreateContainer", "container", c.ID, "error", err)
	}
}

// StartContainer lets plugins see the container before it starts; a
// plugin's error fails StartContainer.
func (s *Service) StartContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	if err := s.a.StartContainer(ctx, &api.StartContainerRequest{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		return fmt.Errorf("NRI plugin refused to start the container: %w", err)
	}
	return nil
}

// PostStartContainer tells plugins the container runs.
func (s *Service) PostStartContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) {
	if err := s.a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		s.log.Warn("NRI PostStartContainer", "container", c.ID, "error", err)
	}
}

// StopContainer tells plugins the container stopped, once, however it
// stopped (StopContainer, its own exit, its pod's stop).
func (s *Service) StopContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) {
	s.mu.Lock()
	if s.stopped[c.ID] {
		s.mu.Unlock()
		return
	}
	s.stopped[c.ID] = true
	s.mu.Unlock()
	rsp, err := s.a.StopContainer(ctx, &api.StopContainerRequest{Pod: podSandbox(pod), Container: container(c, nil)})
	if err != nil {
		s.log.Warn("NRI StopContainer", "container", c.ID, "error", err)
		return
	}
	if len(rsp.GetUpdate()) > 0 {
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_, _ = s.update(ctx, rsp.GetUpdate())
		}()
	}
}

// RemoveContainer tells plugins the container is gone (after its stop).
func (s *Service) RemoveContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) {
	if c.State != sandbox.ContainerCreated {
		s.StopContainer(ctx, pod, c)
	}
	s.mu.Lock()
	delete(s.stopped, c.ID)
	s.mu.Unlock()
	if err := s.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: podSandbox(pod), Container: container(c, nil)}); err != nil {
		s.log.Warn("NRI RemoveContainer", "container", c.ID, "error", err)
	}
}
