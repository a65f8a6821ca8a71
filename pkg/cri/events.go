package cri

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// GetContainerEvents streams container and pod lifecycle events, each with
// the pod's status and its containers' statuses, for kubelet's evented
// PLEG. A subscriber that falls behind is cut off with ResourceExhausted:
// it missed events and must relist (kubelet does).
func (s *runtimeServer) GetContainerEvents(_ *runtime.GetEventsRequest, stream runtime.RuntimeService_GetContainerEventsServer) error {
	sub := s.deps.Pods.SubscribeEvents()
	defer sub.Close()
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				if sub.Lagged() {
					return fmt.Errorf("event subscriber fell behind; events were dropped, list again: %w", errdefs.ErrResourceExhausted)
				}
				return nil
			}
			if ev.Pod.ID == "" {
				continue // a container whose pod is gone: nothing kubelet can place
			}
			if err := stream.Send(toContainerEvent(ev)); err != nil {
				return err
			}
		}
	}
}

var eventTypes = map[sandbox.EventType]runtime.ContainerEventType{
	sandbox.EventCreated: runtime.ContainerEventType_CONTAINER_CREATED_EVENT,
	sandbox.EventStarted: runtime.ContainerEventType_CONTAINER_STARTED_EVENT,
	sandbox.EventStopped: runtime.ContainerEventType_CONTAINER_STOPPED_EVENT,
	sandbox.EventDeleted: runtime.ContainerEventType_CONTAINER_DELETED_EVENT,
}

func toContainerEvent(ev sandbox.Event) *runtime.ContainerEventResponse {
	out := &runtime.ContainerEventResponse{
		ContainerId:        ev.ID,
		ContainerEventType: eventTypes[ev.Type],
		CreatedAt:          ev.At.UnixNano(),
		PodSandboxStatus:   toPodStatus(ev.Pod),
		ContainersStatuses: make([]*runtime.ContainerStatus, 0, len(ev.Containers)),
	}
	for _, c := range ev.Containers {
		out.ContainersStatuses = append(out.ContainersStatuses, toContainerStatus(c))
	}
	return out
}
