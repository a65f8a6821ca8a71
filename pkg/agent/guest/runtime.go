package guest

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
)

// Runtime is the guest's container runtime: crun makes the containers,
// the agent holds their stdio, writes their logs, reaps their inits and
// serves exec, attach and port-forward streams. Nothing of it survives the
// agent: the agent is the guest's PID 1, whose end is the VM's.
type Runtime struct {
	cfg    RuntimeConfig
	log    *slog.Logger
	crun   crun
	reaper *Reaper
	// cgroups reads the containers' cgroups; nil where none is mounted.
	cgroups *cgroup.Manager

	mu         sync.Mutex
	containers map[string]*container
}

// RuntimeConfig says where the runtime keeps things.
type RuntimeConfig struct {
	Binary    string // the OCI runtime: api.GuestRuntime in the guest
	StateDir  string // crun's --root
	BundleDir string // one bundle directory per container
	// TempDir holds console sockets, short-lived: their paths must fit
	// a socket address (108 bytes).
	TempDir string
	// ShmDir and SharedDir are where SetupSandbox mounts the pod's
	// /dev/shm and shared directory (api.GuestShmDir, api.GuestSharedDir).
	ShmDir    string
	SharedDir string
}

// pid1RuntimeConfig is the configuration of the guest's PID 1 with
// binary as its OCI runtime.
func pid1RuntimeConfig(binary string) RuntimeConfig {
	return RuntimeConfig{
		Binary:    binary,
		StateDir:  "/run/crun",
		BundleDir: "/run/cradle/bundles",
		TempDir:   "/run/cradle/tmp",
		ShmDir:    api.GuestShmDir,
		SharedDir: api.GuestSharedDir,
	}
}

// NewRuntime makes the runtime's directories. reaper must be running.
func NewRuntime(cfg RuntimeConfig, reaper *Reaper, log *slog.Logger) (*Runtime, error) {
	if !filepath.IsAbs(cfg.Binary) {
		return nil, fmt.Errorf("OCI runtime %q: want an absolute path: %w", cfg.Binary, errdefs.ErrInvalidArgument)
	}
	for _, d := range []string{cfg.StateDir, cfg.BundleDir, cfg.TempDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("make the runtime's directories: %w", err)
		}
	}
	cg, err := cgroup.New()
	if err != nil {
		log.Warn("no cgroups: containers' stats will be empty", "error", err)
	}
	return &Runtime{
		cfg:        cfg,
		cgroups:    cg,
		log:        log,
		crun:       crun{binary: cfg.Binary, root: cfg.StateDir, reaper: reaper},
		reaper:     reaper,
		containers: map[string]*container{},
	}, nil
}

// validID is what container ids may be: they name directories and crun's
// state.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func checkID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("container id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// get returns the container id (NotFound if unknown).
func (r *Runtime) get(id string) (*container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok || c == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// reserve claims id for a container being made (a nil entry).
func (r *Runtime) reserve(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.containers[id]; ok {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	r.containers[id] = nil
	return nil
}

func (r *Runtime) put(c *container) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.containers[c.id] = c
}

func (r *Runtime) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.containers, id)
}

// list returns the containers made so far.
func (r *Runtime) list() []*container {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*container, 0, len(r.containers))
	for _, c := range r.containers {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}
