package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *runtimeServer) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	cfg, err := toPodConfig(req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	id, err := s.deps.Pods.RunPod(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (s *runtimeServer) StopPodSandbox(ctx context.Context, req *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	if err := s.deps.Pods.StopPod(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

func (s *runtimeServer) UpdatePodSandboxResources(ctx context.Context, req *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	if err := s.deps.Pods.UpdatePodResources(ctx, req.GetPodSandboxId(), toResources(req.GetResources()), toResources(req.GetOverhead())); err != nil {
		return nil, err
	}
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}

func (s *runtimeServer) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	if err := s.deps.Pods.RemovePod(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}

func (s *runtimeServer) PodSandboxStatus(ctx context.Context, req *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	pod, err := s.deps.Pods.Pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	// kubelet's evented PLEG takes a non-zero timestamp to mean that
	// containers_statuses lists every container of the pod, so the two go
	// together, verbose or not.
	cs := s.deps.Pods.ListContainers(sandbox.ContainerFilter{PodID: pod.ID})
	resp := &runtime.PodSandboxStatusResponse{Status: toPodStatus(pod), Timestamp: time.Now().UnixNano(),
		ContainersStatuses: make([]*runtime.ContainerStatus, 0, len(cs))}
	for _, c := range cs {
		resp.ContainersStatuses = append(resp.ContainersStatuses, toContainerStatus(c))
	}
	if req.GetVerbose() {
		b, err := json.Marshal(pod)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func (s *runtimeServer) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	return &runtime.ListPodSandboxResponse{Items: s.listPods(req.GetFilter())}, nil
}

func (s *runtimeServer) listPods(f *runtime.PodSandboxFilter) []*runtime.PodSandbox {
	filter := sandbox.PodFilter{ID: f.GetId(), Labels: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		state := sandbox.PodNotReady
		if st.GetState() == runtime.PodSandboxState_SANDBOX_READY {
			state = sandbox.PodReady
		}
		filter.State = &state
	}
	pods := s.deps.Pods.ListPods(filter)
	out := make([]*runtime.PodSandbox, 0, len(pods))
	for _, p := range pods {
		out = append(out, &runtime.PodSandbox{
			Id:             p.ID,
			Metadata:       podMetadata(p),
			State:          podState(p),
			CreatedAt:      p.CreatedAt.UnixNano(),
			Labels:         p.Config.Labels,
			Annotations:    p.Config.Annotations,
			RuntimeHandler: p.Handler,
		})
	}
	return out
}

// toPodConfig validates and translates a PodSandboxConfig.
func toPodConfig(c *runtime.PodSandboxConfig, handler string) (sandbox.PodConfig, error) {
	md := c.GetMetadata()
	if c == nil || md == nil {
		return sandbox.PodConfig{}, fmt.Errorf("pod sandbox config needs metadata: %w", errdefs.ErrInvalidArgument)
	}
	if err := validHostname(c.GetHostname()); err != nil {
		return sandbox.PodConfig{}, err
	}
	sc := c.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	cfg := sandbox.PodConfig{
		Name: md.GetName(), UID: md.GetUid(), Namespace: md.GetNamespace(), Attempt: md.GetAttempt(),
		Hostname:          c.GetHostname(),
		RequestedHostname: c.GetHostname(),
		LogDirectory:      c.GetLogDirectory(),
		Labels:            c.GetLabels(),
		Annotations:       c.GetAnnotations(),
		Handler:           handler,
		Network:           toMode(ns.GetNetwork()),
		PID:               toMode(ns.GetPid()),
		IPC:               toMode(ns.GetIpc()),
		CgroupParent:      c.GetLinux().GetCgroupParent(),
		Sysctls:           c.GetLinux().GetSysctls(),
		UserNSNode:        ns.GetUsernsOptions() != nil && ns.GetUsernsOptions().GetMode() == runtime.NamespaceMode_NODE,
		Privileged:        sc.GetPrivileged(),
		Resources:         toResources(c.GetLinux().GetResources()),
		Overhead:          toResources(c.GetLinux().GetOverhead()),
	}
	userNS, err := toUserNS(ns)
	if err != nil {
		return cfg, err
	}
	cfg.UserNS = userNS
	if d := c.GetDnsConfig(); d != nil {
		cfg.DNS = &sandbox.DNSConfig{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	for _, pm := range c.GetPortMappings() {
		proto := strings.ToLower(pm.GetProtocol().String())
		if proto != "tcp" && proto != "udp" {
			return cfg, fmt.Errorf("port mapping protocol %s is not supported (tcp, udp): %w", pm.GetProtocol(), errdefs.ErrInvalidArgument)
		}
		cfg.PortMappings = append(cfg.PortMappings, sandbox.PortMapping{
			Protocol: proto, ContainerPort: pm.GetContainerPort(), HostPort: pm.GetHostPort(), HostIP: pm.GetHostIp(),
		})
	}
	return cfg, nil
}

func toMode(m runtime.NamespaceMode) ctrconfig.NamespaceMode {
	switch m {
	case runtime.NamespaceMode_NODE:
		return ctrconfig.NamespaceNode
	case runtime.NamespaceMode_CONTAINER:
		return ctrconfig.NamespaceContainer
	}
	return ctrconfig.NamespacePod
}

func fromMode(m ctrconfig.NamespaceMode) runtime.NamespaceMode {
	switch m {
	case ctrconfig.NamespaceNode:
		return runtime.NamespaceMode_NODE
	case ctrconfig.NamespaceContainer:
		return runtime.NamespaceMode_CONTAINER
	}
	return runtime.NamespaceMode_POD
}

func podMetadata(p sandbox.Pod) *runtime.PodSandboxMetadata {
	return &runtime.PodSandboxMetadata{Name: p.Config.Name, Uid: p.Config.UID, Namespace: p.Config.Namespace, Attempt: p.Config.Attempt}
}

func podState(p sandbox.Pod) runtime.PodSandboxState {
	if p.State == sandbox.PodReady {
		return runtime.PodSandboxState_SANDBOX_READY
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY
}

func toPodStatus(p sandbox.Pod) *runtime.PodSandboxStatus {
	st := &runtime.PodSandboxStatus{
		Id:        p.ID,
		Metadata:  podMetadata(p),
		State:     podState(p),
		CreatedAt: p.CreatedAt.UnixNano(),
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: &runtime.NamespaceOption{
			Network: fromMode(p.Config.Network), Pid: fromMode(p.Config.PID), Ipc: fromMode(p.Config.IPC),
			UsernsOptions: fromUserNS(p.Config),
		}}},
		Labels:         p.Config.Labels,
		Annotations:    p.Config.Annotations,
		RuntimeHandler: p.Handler,
		Network:        &runtime.PodSandboxNetworkStatus{},
	}
	if len(p.IPs) > 0 {
		st.Network.Ip = p.IPs[0]
		for _, ip := range p.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	}
	return st
}
