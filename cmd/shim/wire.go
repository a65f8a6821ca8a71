//go:build !guest

package main

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/sandbox/oci"
	"github.com/cradle-runtime/cradle/pkg/storage"

	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
)

// podNetwork adapts the network Manager to the engine's Network seam.
type podNetwork struct{ m *network.Manager }

var (
	_ sandbox.Network = podNetwork{}
	_ sandbox.Taps    = podNetwork{}
)

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
		HostNetwork:  pod.Config.Network == ctrconfig.NamespaceNode,
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

func (p podNetwork) InterfaceStats(_ context.Context, nsPath string) ([]sandbox.InterfaceStats, error) {
	links, err := network.LinkStats(nsPath)
	if err != nil {
		return nil, err
	}
	out := make([]sandbox.InterfaceStats, 0, len(links))
	for _, l := range links {
		out = append(out, sandbox.InterfaceStats(l))
	}
	return out, nil
}

func (p podNetwork) CreateTap(netns, name string) error { return network.CreateTap(netns, name) }

func (p podNetwork) WireTap(netns, name string) (sandbox.Tap, error) {
	t, err := network.WireTap(netns, name)
	if err != nil {
		return sandbox.Tap{}, err
	}
	out := sandbox.Tap{Name: t.Name, MTU: t.MTU, MAC: t.MAC, Addrs: t.Addrs}
	for _, r := range t.Routes {
		out.Routes = append(out.Routes, sandbox.TapRoute(r))
	}
	return out, nil
}

func (p podNetwork) DetachTap(netns, name string) error { return network.DetachTap(netns, name) }

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// podImages adapts the image store to the engine's Images seam.
type podImages struct{ s *storage.Store }

var _ sandbox.Images = podImages{}

func (p podImages) Resolve(ctx context.Context, ref string) (sandbox.ImageInfo, error) {
	img, err := p.s.Get(ctx, ref)
	if err != nil {
		return sandbox.ImageInfo{}, err
	}
	return sandbox.ImageInfo{ID: img.ID, Config: img.Config.Config, Annotations: img.Annotations}, nil
}

func (p podImages) ReadLayers(ctx context.Context, image string, fn func(io.Reader) error) error {
	return p.s.ReadLayers(ctx, image, fn)
}

func (p podImages) PrepareRootfs(ctx context.Context, key, image string) ([]mount.Mount, error) {
	return p.s.PrepareRootfs(ctx, key, image)
}

func (p podImages) PrepareView(ctx context.Context, key, image string) ([]mount.Mount, error) {
	return p.s.PrepareView(ctx, key, image)
}

func (p podImages) RemoveRootfs(ctx context.Context, key string) error {
	return p.s.RemoveRootfs(ctx, key)
}

func (p podImages) RootfsUsage(ctx context.Context, key string) (sandbox.FsUsage, error) {
	u, err := p.s.RootfsUsage(ctx, key)
	return sandbox.FsUsage(u), err
}

// hostFacts are what spec building needs to know of this host, detected.
func hostFacts(cg *cgroup.Manager) oci.Host {
	h := oci.Host{
		CgroupV2:              cg.V2(),
		MinOOMScoreAdj:        minOOMScoreAdj(),
		RuntimeDefaultSeccomp: oci.SeccompBuiltin,
	}
	if sizes, err := cgroup.HugePageSizes(); err == nil {
		h.HugePageSizes = sizes
	}
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil && strings.TrimSpace(string(b)) == "Y" {
		h.AppArmor = true
	}
	if cg.V2() {
		_, err := os.Stat("/sys/fs/cgroup/memory.swap.max")
		h.SwapAccounting = err == nil
	} else {
		_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		h.SwapAccounting = err == nil
	}
	return h
}

// handlerFeatures are the probed features of each handler, by name.
func handlerFeatures(handlers []sandbox.Handler) map[string]sandbox.HandlerFeatures {
	out := make(map[string]sandbox.HandlerFeatures, len(handlers))
	for _, h := range handlers {
		out[h.Name] = h.Features
	}
	return out
}

// minOOMScoreAdj is the lowest oom_score_adj this process can give its
// children: -1000 with CAP_SYS_RESOURCE, else its own (a negative value
// needs the capability; root on some nodes lacks it).
func minOOMScoreAdj() int {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err == nil && caps&(1<<24) != 0 {
					return -1000
				}
			}
		}
	}
	own, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(own)))
	if err != nil {
		return 0
	}
	return n
}
