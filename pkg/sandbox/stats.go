package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
)

// FsUsage is the space a writable layer takes, and the size and free
// inodes of the filesystem it is on.
type FsUsage struct {
	Mountpoint    string
	UsedBytes     uint64
	Inodes        uint64
	CapacityBytes uint64
	InodesFree    uint64
}

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// ContainerStats are a container's figures at one instant.
type ContainerStats struct {
	Container Container
	At        time.Time
	// Cgroup is nil when the container has no live cgroup (not running).
	Cgroup *cgroup.Stats
	// NanoCores is the CPU rate since the previous sample of this
	// container (by any caller); nil for the first.
	NanoCores     *uint64
	WritableLayer *FsUsage // nil when the layer cannot be measured
	// Processes are counted over the processes in the cgroup; nil with
	// Cgroup.
	Processes *ProcessCounts
}

// PodStats are a pod's figures at one instant.
type PodStats struct {
	Pod        Pod
	At         time.Time
	Cgroup     *cgroup.Stats // the pod cgroup: its containers' sum
	NanoCores  *uint64
	Network    []InterfaceStats // the pod's namespace; nil with host networking
	Processes  uint64
	Containers []ContainerStats // its running containers
}

// ContainerStats measures one container, in any state.
func (m *Manager) ContainerStats(ctx context.Context, id string) (ContainerStats, error) {
	c, err := m.Container(id)
	if err != nil {
		return ContainerStats{}, err
	}
	return m.containerStats(ctx, c), nil
}

// ListContainerStats measures the running containers that match f (its
// State is ignored).
func (m *Manager) ListContainerStats(ctx context.Context, f ContainerFilter) []ContainerStats {
	running := ContainerRunning
	f.State = &running
	cs := m.ListContainers(f)
	out := make([]ContainerStats, len(cs))
	parallel(len(cs), func(i int) { out[i] = m.containerStats(ctx, cs[i]) })
	return out
}

func (m *Manager) containerStats(ctx context.Context, c Container) ContainerStats {
	st := ContainerStats{Container: c, At: time.Now()}
	if c.CgroupPath != "" && (c.State == ContainerRunning || c.State == ContainerCreated) {
		cg, procs, err := m.cgroupStats(ctx, &c)
		if err == nil {
			st.Cgroup = &cg
			st.NanoCores = m.samples.rate(c.ID, st.At, cg.CPU.UsageNanos)
			st.Processes = procs
		} else if !errdefs.IsNotFound(err) {
			m.log.WarnContext(ctx, "container cgroup stats", "container", c.ID, "error", err)
		}
	}
	if u, err := m.opts.Images.RootfsUsage(ctx, c.ID); err == nil {
		st.WritableLayer = &u
	} else if !errdefs.IsNotFound(err) {
		m.log.WarnContext(ctx, "writable layer usage", "container", c.ID, "error", err)
	}
	return st
}

// cgroupStats reads c's cgroup through its pod's backend. The process
// counts are nil where they cannot be read.
func (m *Manager) cgroupStats(ctx context.Context, c *Container) (cgroup.Stats, *ProcessCounts, error) {
	pod, b, err := m.podOf(c)
	if err != nil {
		return cgroup.Stats{}, nil, err
	}
	return b.ContainerCgroupStats(ctx, pod, c)
}

// PodStats measures one pod and its running containers.
func (m *Manager) PodStats(ctx context.Context, id string) (PodStats, error) {
	p, err := m.Pod(id)
	if err != nil {
		return PodStats{}, err
	}
	return m.podStats(ctx, p)
}

// ListPodStats measures the Ready pods that match f (its State is ignored).
// A pod that goes away while measured is left out.
func (m *Manager) ListPodStats(ctx context.Context, f PodFilter) []PodStats {
	ready := PodReady
	f.State = &ready
	pods := m.ListPods(f)
	out := make([]PodStats, len(pods))
	errs := make([]error, len(pods))
	parallel(len(pods), func(i int) { out[i], errs[i] = m.podStats(ctx, pods[i]) })
	kept := out[:0]
	for i, st := range out {
		if errs[i] != nil {
			m.log.DebugContext(ctx, "pod stats", "pod", pods[i].ID, "error", errs[i])
			continue
		}
		kept = append(kept, st)
	}
	return kept
}

func (m *Manager) podStats(ctx context.Context, p Pod) (PodStats, error) {
	st := PodStats{Pod: p, At: time.Now()}
	if p.Cgroup != "" && p.State == PodReady {
		cg, err := m.opts.Cgroups.Stats(p.Cgroup)
		switch {
		case err == nil:
			st.Cgroup = &cg
			st.NanoCores = m.samples.rate(p.ID, st.At, cg.CPU.UsageNanos)
			st.Processes = cg.Pids
		case errdefs.IsNotFound(err):
		default:
			return st, fmt.Errorf("stats of pod %s: %w", p.ID, err)
		}
	}
	if p.NetNS != "" && p.State == PodReady {
		ifs, err := m.opts.Network.InterfaceStats(ctx, p.NetNS)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return st, fmt.Errorf("network stats of pod %s: %w", p.ID, err)
		}
		st.Network = ifs
	}
	st.Containers = m.ListContainerStats(ctx, ContainerFilter{PodID: p.ID})
	return st, nil
}

// statsParallelism bounds the concurrent measurements of one list call
// (each walks cgroup files and, for writable layers, directories).
const statsParallelism = 4

func parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, statsParallelism)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// cpuSamples keeps the last CPU reading of each container and pod, so that
// a stats call reports a rate (usage_nano_cores) as kubelet expects of a
// CRI-only stats provider.
type cpuSamples struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at    time.Time
	usage uint64
}

// minRateWindow is the youngest a kept sample is replaced at: callers
// that ask close together (kubelet and crictl, say) still get rates over a
// window long enough to mean something.
const minRateWindow = time.Second

// rate records a reading and returns the rate since the kept one (nil for
// the first, or when time or usage went backwards).
func (s *cpuSamples) rate(id string, at time.Time, usage uint64) *uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.last[id]
	if !ok || at.Sub(prev.at) >= minRateWindow || usage < prev.usage {
		s.last[id] = cpuSample{at: at, usage: usage}
	}
	if !ok || !at.After(prev.at) || usage < prev.usage {
		return nil
	}
	r := uint64(float64(usage-prev.usage) / at.Sub(prev.at).Seconds())
	return &r
}

func (s *cpuSamples) forget(id string) {
	s.mu.Lock()
	delete(s.last, id)
	s.mu.Unlock()
}
