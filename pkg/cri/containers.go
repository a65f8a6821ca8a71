package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *runtimeServer) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	if req.GetConfig() == nil || req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("CreateContainer needs a pod sandbox ID and a config: %w", errdefs.ErrInvalidArgument)
	}
	cfg, err := toContainerConfig(req.GetConfig())
	if err != nil {
		return nil, err
	}
	id, err := s.deps.Pods.CreateContainer(ctx, req.GetPodSandboxId(), cfg)
	if err != nil {
		return nil, err
	}
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

func (s *runtimeServer) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	if err := s.deps.Pods.StartContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtime.StartContainerResponse{}, nil
}

func (s *runtimeServer) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	if err := s.deps.Pods.StopContainer(ctx, req.GetContainerId(), time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

func (s *runtimeServer) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	if err := s.deps.Pods.RemoveContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

func (s *runtimeServer) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	return &runtime.ListContainersResponse{Containers: s.listContainers(req.GetFilter())}, nil
}

func (s *runtimeServer) listContainers(f *runtime.ContainerFilter) []*runtime.Container {
	filter := sandbox.ContainerFilter{ID: f.GetId(), PodID: f.GetPodSandboxId(), Labels: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		state := fromCRIContainerState(st.GetState())
		filter.State = &state
	}
	cs := s.deps.Pods.ListContainers(filter)
	out := make([]*runtime.Container, 0, len(cs))
	for _, c := range cs {
		out = append(out, &runtime.Container{
			Id: c.ID, PodSandboxId: c.PodID, Metadata: containerMetadata(c),
			Image: &runtime.ImageSpec{Image: c.ImageRef}, ImageRef: c.ImageID, ImageId: c.ImageID,
			State: toCRIContainerState(c.State), CreatedAt: c.CreatedAt.UnixNano(),
			Labels: c.Config.Labels, Annotations: c.Config.Annotations,
		})
	}
	return out
}

func (s *runtimeServer) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	c, err := s.deps.Pods.Container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.ContainerStatusResponse{Status: toContainerStatus(c)}
	if req.GetVerbose() {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func (s *runtimeServer) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	res, err := s.deps.Pods.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

func (s *runtimeServer) UpdateContainerResources(ctx context.Context, req *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	if req.GetLinux() == nil {
		return nil, fmt.Errorf("UpdateContainerResources needs Linux resources: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.deps.Pods.UpdateContainerResources(ctx, req.GetContainerId(), toResources(req.GetLinux())); err != nil {
		return nil, err
	}
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

// CheckpointContainer writes a checkpoint archive of a running container
// at the request's location (an absolute path); the container keeps
// running. The timeout is in seconds; 0: the request's own deadline.
func (s *runtimeServer) CheckpointContainer(ctx context.Context, req *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	if req.GetContainerId() == "" || req.GetLocation() == "" {
		return nil, fmt.Errorf("CheckpointContainer needs a container ID and a location: %w", errdefs.ErrInvalidArgument)
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	if err := s.deps.Pods.CheckpointContainer(ctx, req.GetContainerId(), req.GetLocation(), timeout); err != nil {
		return nil, err
	}
	return &runtime.CheckpointContainerResponse{}, nil
}

func (s *runtimeServer) ReopenContainerLog(ctx context.Context, req *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	if err := s.deps.Pods.ReopenContainerLog(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}

func toContainerStatus(c sandbox.Container) *runtime.ContainerStatus {
	return &runtime.ContainerStatus{
		Id: c.ID, Metadata: containerMetadata(c), State: toCRIContainerState(c.State),
		CreatedAt: c.CreatedAt.UnixNano(), StartedAt: unixNano(c.StartedAt), FinishedAt: unixNano(c.FinishedAt),
		ExitCode: c.ExitCode, Image: &runtime.ImageSpec{Image: c.ImageRef}, ImageRef: c.ImageID, ImageId: c.ImageID,
		Reason: c.Reason, Message: c.Message, Labels: c.Config.Labels, Annotations: c.Config.Annotations,
		Mounts: statusMounts(c), LogPath: c.LogPath,
		Resources:  &runtime.ContainerResources{Linux: fromResources(c.Config.Resources)},
		StopSignal: runtime.Signal(runtime.Signal_value["SIGNAL_"+c.StopSignal]),
		User:       containerUser(c.User),
	}
}

func toCRIContainerState(s sandbox.ContainerState) runtime.ContainerState {
	switch s {
	case sandbox.ContainerCreated:
		return runtime.ContainerState_CONTAINER_CREATED
	case sandbox.ContainerRunning:
		return runtime.ContainerState_CONTAINER_RUNNING
	case sandbox.ContainerExited:
		return runtime.ContainerState_CONTAINER_EXITED
	}
	return runtime.ContainerState_CONTAINER_UNKNOWN
}

func fromCRIContainerState(s runtime.ContainerState) sandbox.ContainerState {
	switch s {
	case runtime.ContainerState_CONTAINER_CREATED:
		return sandbox.ContainerCreated
	case runtime.ContainerState_CONTAINER_RUNNING:
		return sandbox.ContainerRunning
	case runtime.ContainerState_CONTAINER_EXITED:
		return sandbox.ContainerExited
	}
	return sandbox.ContainerUnknown
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// statusMounts are the container's mounts as kubelet asked for them, with
// the ID of the image each image volume mounts (ImageSpec.image_ref).
func statusMounts(c sandbox.Container) []*runtime.Mount {
	var out []*runtime.Mount
	for i, m := range c.Config.Mounts {
		out = append(out, fromMount(m, c.ImageVolumes[i]))
	}
	return out
}

func containerMetadata(c sandbox.Container) *runtime.ContainerMetadata {
	return &runtime.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt}
}
