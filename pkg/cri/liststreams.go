package cri

import (
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The Stream* RPCs (cri-api's CRIListStreaming, KEP-5825) answer what the
// List* RPCs answer, in chunks of at most streamChunk items, so that no
// message reaches gRPC's size limit; an empty result sends nothing.
const streamChunk = 100

// sendChunks sends items in chunks; send is given at least one item.
func sendChunks[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), streamChunk)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

func (s *runtimeServer) StreamPodSandboxes(req *runtime.StreamPodSandboxesRequest, stream runtime.RuntimeService_StreamPodSandboxesServer) error {
	return sendChunks(s.listPods(req.GetFilter()), func(items []*runtime.PodSandbox) error {
		return stream.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: items})
	})
}

func (s *runtimeServer) StreamContainers(req *runtime.StreamContainersRequest, stream runtime.RuntimeService_StreamContainersServer) error {
	return sendChunks(s.listContainers(req.GetFilter()), func(items []*runtime.Container) error {
		return stream.Send(&runtime.StreamContainersResponse{Containers: items})
	})
}

func (s *runtimeServer) StreamContainerStats(req *runtime.StreamContainerStatsRequest, stream runtime.RuntimeService_StreamContainerStatsServer) error {
	return sendChunks(s.listContainerStats(stream.Context(), req.GetFilter()), func(items []*runtime.ContainerStats) error {
		return stream.Send(&runtime.StreamContainerStatsResponse{ContainerStats: items})
	})
}

func (s *runtimeServer) StreamPodSandboxStats(req *runtime.StreamPodSandboxStatsRequest, stream runtime.RuntimeService_StreamPodSandboxStatsServer) error {
	return sendChunks(s.listPodStats(stream.Context(), req.GetFilter()), func(items []*runtime.PodSandboxStats) error {
		return stream.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: items})
	})
}

func (s *runtimeServer) StreamPodSandboxMetrics(_ *runtime.StreamPodSandboxMetricsRequest, stream runtime.RuntimeService_StreamPodSandboxMetricsServer) error {
	return sendChunks(s.podMetrics(stream.Context()), func(items []*runtime.PodSandboxMetrics) error {
		return stream.Send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: items})
	})
}

func (s *imageServer) StreamImages(req *runtime.StreamImagesRequest, stream runtime.ImageService_StreamImagesServer) error {
	imgs, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(imgs, func(items []*runtime.Image) error {
		return stream.Send(&runtime.StreamImagesResponse{Images: items})
	})
}
