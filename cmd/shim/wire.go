package main

import (
	"context"
	"net"

	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
)

// podNetwork adapts the network Manager to the engine's Network seam.
type podNetwork struct{ m *network.Manager }

var _ sandbox.Network = podNetwork{}

func (p podNetwork) NewNetNS(podID string) (string, error) {
	return network.NewNetNS(p.m.NetNSDir(), podID)
}

func (p podNetwork) RemoveNetNS(path string) error { return network.RemoveNetNS(path) }

func (p podNetwork) Setup(ctx context.Context, pod *sandbox.Pod) ([]string, error) {
	pm := make([]network.PortMapping, 0, len(pod.Config.PortMappings))
	for _, m := range pod.Config.PortMappings {
		pm = append(pm, network.PortMapping{Protocol: m.Protocol, ContainerPort: m.ContainerPort, HostPort: m.HostPort, HostIP: m.HostIP})
	}
	res, err := p.m.Setup(ctx, network.PodNetwork{
		PodID:        pod.ID,
		Name:         pod.Config.Name,
		Namespace:    pod.Config.Namespace,
		NetNSPath:    pod.NetNS,
		PortMappings: pm,
		HostNetwork:  pod.Config.Network == sandbox.NamespaceNode,
	})
	if err != nil {
		return nil, err
	}
	return ipStrings(res.IPs), nil
}

func (p podNetwork) Teardown(ctx context.Context, podID string) error {
	return p.m.Teardown(ctx, podID)
}

func (p podNetwork) Reconcile(ctx context.Context, live []string) error {
	return p.m.Reconcile(ctx, live)
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}
