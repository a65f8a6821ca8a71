package sandbox

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/checkpoint"
	"github.com/cradle-runtime/cradle/pkg/sandbox/oci"
)

const podKind = "pods"

// Options wire a Manager.
type Options struct {
	StateDir       string             // <state>/pods/<id> directories
	ContainerDir   string             // <state>/containers/<id> bundles
	CheckpointDir  string             // <root>/checkpoints
	LogDir         string             // logs of pods made with no log directory ("": <CheckpointDir>/../logs)
	DefaultHandler string             // handler for pods that name none
	Backends       map[string]Backend // by handler name
	Network        Network
	Cgroups        Cgroups
	Images         Images
	Host           oci.Host // facts of this host for spec building
	// Devices are the host's device nodes: CRI devices are looked up
	// there, and privileged containers get them all.
	Devices oci.HostDevices
	// Features are what each handler's runtime supports, by handler name
	// (recursive read-only mounts, user namespaces): a pod's containers
	// get its handler's.
	Features    map[string]HandlerFeatures
	AllowedCaps []string // capabilities the daemon holds (nil: all)
	CgroupRoot  string   // parent of pod cgroups when kubelet gives none, e.g. /cradle
	// SystemdCgroups: kubelet uses the systemd cgroup driver, and names pod
	// cgroups as slices (kubepods-burstable-pod<uid>.slice).
	SystemdCgroups bool
	EventBuffer    int // events a subscriber may fall behind by (0: DefaultEventBuffer)
	Logger         *slog.Logger
	// Failpoint, when set, is called with the name of each step of the
	// engine's multi-step operations as it completes ("runpod:cgroup",
	// "createcontainer:rootfs"…): the crash tests' hook, where the daemon
	// kills itself (cmd/shim, CRADLE_FAILPOINT).
	Failpoint func(step string)
	// NRI relays the lifecycle to NRI plugins (nil: none).
	NRI NRI
	// V1Configs reads the CRI configs of version-1 checkpoints; nil: such
	// checkpoints are unreadable.
	V1Configs V1Configs
}

// Manager is the pod engine. It is safe for concurrent use; calls on one
// pod are serialised by the pod's lock.
type Manager struct {
	opts  Options
	log   *slog.Logger
	ckpt  *checkpoint.Store
	names *registrar

	events   *broker
	counters counters
	samples  cpuSamples

	mu         sync.Mutex
	pods       map[string]*podEntry
	containers map[string]*containerEntry
}

type podEntry struct {
	mu   sync.Mutex // held while the pod changes
	pod  *Pod
	seen Pod // copy of pod as last checkpointed; guarded by Manager.mu
}

func newPodEntry(pod *Pod) *podEntry { return &podEntry{pod: pod, seen: pod.clone()} }

// New makes a Manager; call Recover before serving.
func New(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NRI == nil {
		opts.NRI = noNRI{}
	}
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(filepath.Dir(opts.CheckpointDir), "logs")
	}
	ckpt, err := checkpoint.New(opts.CheckpointDir)
	if err != nil {
		return nil, err
	}
	if _, ok := opts.Backends[opts.DefaultHandler]; !ok {
		return nil, fmt.Errorf("default handler %q has no backend: %w", opts.DefaultHandler, errdefs.ErrInvalidArgument)
	}
	return &Manager{opts: opts, log: opts.Logger, ckpt: ckpt, names: newRegistrar(),
		events: newBroker(opts.EventBuffer, opts.Logger), samples: cpuSamples{last: map[string]cpuSample{}},
		pods: map[string]*podEntry{}, containers: map[string]*containerEntry{}}, nil
}

// failpoint marks a step done for the crash tests (Options.Failpoint).
func (m *Manager) failpoint(step string) {
	if m.opts.Failpoint != nil {
		m.opts.Failpoint(step)
	}
}

// save checkpoints pod, and refreshes the snapshot events report it by.
// Callers hold its entry's lock.
func (m *Manager) save(pod *Pod) error {
	m.mu.Lock()
	if e := m.pods[pod.ID]; e != nil && e.pod == pod {
		e.seen = pod.clone()
	}
	m.mu.Unlock()
	if err := m.ckpt.Save(podKind, pod.ID, podCheckpointVersion, pod); err != nil {
		return fmt.Errorf("checkpoint pod %s: %w", pod.ID, err)
	}
	return nil
}

// entry finds a pod by ID or unique ID prefix.
func (m *Manager) entry(id string) (*podEntry, error) {
	if id == "" {
		return nil, fmt.Errorf("empty pod sandbox ID: %w", errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.pods[id]; ok {
		return e, nil
	}
	var found *podEntry
	for pid, e := range m.pods {
		if strings.HasPrefix(pid, id) {
			if found != nil {
				return nil, fmt.Errorf("pod sandbox ID prefix %q is ambiguous: %w", id, errdefs.ErrInvalidArgument)
			}
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return found, nil
}

// Pod returns a copy of the pod with this ID (or unique prefix), as last
// checkpointed: it never waits for a call on the pod (a RunPod, or a
// StopPod waiting for its containers or an NRI plugin).
func (m *Manager) Pod(id string) (Pod, error) {
	e, err := m.entry(id)
	if err != nil {
		return Pod{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.seen.clone(), nil
}

// podState is the pod's state as last checkpointed, read without its lock.
func (m *Manager) podState(e *podEntry) PodState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.seen.State
}

// PodFilter selects pods for ListPods; zero fields match everything.
type PodFilter struct {
	ID     string // ID or prefix
	State  *PodState
	Labels map[string]string
}

// ListPods returns the pods that match f, oldest first, as last
// checkpointed (like Pod, it never waits for a call on a pod).
func (m *Manager) ListPods(f PodFilter) []Pod {
	m.mu.Lock()
	var out []Pod
	for _, e := range m.pods {
		if f.matches(e.seen) {
			out = append(out, e.seen.clone())
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

func (f PodFilter) matches(p Pod) bool {
	if f.ID != "" && !strings.HasPrefix(p.ID, f.ID) {
		return false
	}
	if f.State != nil && p.State != *f.State {
		return false
	}
	for k, v := range f.Labels {
		if p.Config.Labels[k] != v {
			return false
		}
	}
	return p.State != PodCreating && p.State != PodRemoved
}

func (p *Pod) clone() Pod {
	c := *p
	c.IPs = slices.Clone(p.IPs)
	c.NS = make(map[string]string, len(p.NS))
	for k, v := range p.NS {
		c.NS[k] = v
	}
	return c
}

func (m *Manager) podDir(id string) string { return filepath.Join(m.opts.StateDir, id) }
