package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrcheckpoint"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/sandbox/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const containerKind = "containers"

// containerEntry's lock is held while the container changes; it is
// never held while waiting for a process.
type containerEntry struct {
	mu sync.Mutex
	// removed is set, under mu, when RemoveContainer has released the
	// container: a call that found the entry before and waited for mu
	// finds nothing (lockContainer).
	removed bool
	c       *Container
	seen    Container // copy of c as last checkpointed; guarded by Manager.mu
	// dumping is held while CheckpointContainer runs (without mu: status
	// and lists go on meanwhile); a second checkpoint is refused.
	dumping sync.Mutex
}

func newContainerEntry(c *Container) *containerEntry { return &containerEntry{c: c, seen: *c} }

// containerName is kubelet's unique container name within the node.
func containerName(pod *Pod, cfg ctrconfig.Container) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", cfg.Name, pod.Config.Name, pod.Config.Namespace, pod.Config.UID, cfg.Attempt)
}

// CreateContainer makes a container in a Ready pod: named steps on an undo
// stack, checkpointed as Creating before the first resource exists.
func (m *Manager) CreateContainer(ctx context.Context, podID string, cfg ctrconfig.Container) (_ string, retErr error) {
	if cfg.Name == "" || cfg.Image == "" {
		return "", fmt.Errorf("container config needs a name and an image: %w", errdefs.ErrInvalidArgument)
	}
	// Before any lock: a plugin's synchronization lists every container.
	defer m.opts.NRI.BlockSync()()
	e, err := m.entry(podID)
	if err != nil {
		return "", err
	}
	// Refused at once, without waiting for the pod's lock, while the pod is
	// still being made (an NRI plugin may hold its RunPodSandbox for long)
	// or is stopped; checked again under the lock below.
	if st := m.podState(e); st != PodReady {
		return "", fmt.Errorf("pod sandbox %s is %s: %w", e.pod.ID, st, errdefs.ErrFailedPrecondition)
	}
	// Before the pod's lock: the target's lock is never taken under it.
	targetPID, err := m.targetPID(e.pod.ID, cfg)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pod := e.pod
	if pod.State != PodReady {
		return "", fmt.Errorf("pod sandbox %s is %s: %w", pod.ID, pod.State, errdefs.ErrFailedPrecondition)
	}
	b, err := m.backendOf(pod)
	if err != nil {
		return "", err
	}
	id := newID()
	logPath, err := m.containerLogPath(pod, id, cfg)
	if err != nil {
		return "", err
	}
	if err := checkMountSources(cfg.Mounts); err != nil {
		return "", err
	}
	if err := checkPropagation(cfg.Mounts); err != nil {
		return "", err
	}
	if err := checkImageVolumes(cfg.Mounts); err != nil {
		return "", err
	}
	c := &Container{ID: id, PodID: pod.ID, Config: cfg, ImageRef: cfg.Image, State: ContainerCreating,
		CreatedAt: time.Now().UTC(), LogPath: logPath, targetPID: targetPID}
	c.Bundle = filepath.Join(m.opts.ContainerDir, c.ID)
	name := containerName(pod, cfg)
	if err := m.names.reserve(name, c.ID); err != nil {
		return "", fmt.Errorf("container %q: %w", name, err)
	}
	if err := m.saveContainer(c); err != nil {
		m.names.release(name, c.ID)
		return "", err
	}
	created := false
	defer func() {
		// Also when a step panics (the RPC layer recovers it): nothing
		// half-made stays behind.
		if retErr != nil || !created {
			m.abandonContainer(ctx, c, pod, b)
		}
	}()
	m.failpoint("createcontainer:recorded")
	if err := m.createSteps(ctx, pod, c, b); err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	if err := m.setContainerState(c, ContainerCreated); err != nil {
		return "", err
	}
	m.mu.Lock()
	m.containers[c.ID] = newContainerEntry(c)
	m.mu.Unlock()
	created = true
	m.emitContainer(EventCreated, c)
	m.opts.NRI.PostCreateContainer(ctx, pod, c)
	m.log.InfoContext(ctx, "container created", "container", c.ID, "name", name, "pod", pod.ID)
	return c.ID, nil
}

// abandonContainer undoes a failed CreateContainer from the container's
// record (releaseContainer): forgotten once released, else kept and
// listed as Unknown, so that RemoveContainer and the next start finish it.
// The caller holds the pod's lock.
func (m *Manager) abandonContainer(ctx context.Context, c *Container, pod *Pod, b Backend) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanup.Timeout) // the request's values (its ID), not its end
	defer cancel()
	if err := m.releaseContainer(ctx, c, pod, b); err != nil {
		m.log.ErrorContext(ctx, "undo of a failed CreateContainer; the container stays listed as Unknown until it can be removed", "container", c.ID, "error", err)
		m.mu.Lock()
		m.containers[c.ID] = newContainerEntry(c)
		m.mu.Unlock()
		return
	}
	m.names.release(containerName(pod, c.Config), c.ID)
	if err := m.ckpt.Delete(containerKind, c.ID); err != nil {
		m.log.ErrorContext(ctx, "remove the checkpoint of an undone container", "container", c.ID, "error", err)
	}
}

// createSteps makes the container. Each resource is derived from the
// container's ID (its rootfs snapshot, bundle, runtime state) or recorded
// in its checkpoint before it is made, so releaseContainer undoes any
// prefix of them.
func (m *Manager) createSteps(ctx context.Context, pod *Pod, c *Container, b Backend) error {
	img, dumped, err := m.resolveImage(ctx, c)
	if err != nil {
		return err
	}
	c.ImageID = img.ID
	c.StopSignal = stopSignal(c.Config, img.Config.StopSignal)
	mounts, err := m.opts.Images.PrepareRootfs(ctx, c.ID, img.ID)
	if err != nil {
		return err
	}
	m.failpoint("createcontainer:rootfs")
	if mounts, err = idmapRootfs(mounts, pod.Config.UserNS); err != nil {
		return err
	}
	if err := os.MkdirAll(c.Rootfs(), 0o711); err != nil {
		return err
	}
	if err := mount.All(mounts, c.Rootfs()); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	if dumped != nil {
		if err := ctrcheckpoint.ApplyRootfsDiff(ctx, restoreDir(c), c.Rootfs()); err != nil {
			return fmt.Errorf("restore rootfs changes: %w", err)
		}
	}
	cfg, err := m.mountImageVolumes(ctx, c)
	if err != nil {
		return err
	}
	m.failpoint("createcontainer:mount")
	spec, err := m.buildSpec(ctx, pod, c, cfg, img)
	if err != nil {
		return err
	}
	if dumped != nil {
		restoredProcess(spec.Spec, dumped)
	}
	if err := m.opts.NRI.CreateContainer(ctx, pod, c, spec.Spec); err != nil {
		return err
	}
	if c.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil {
			return err
		}
	}
	if spec.Spec.Linux != nil {
		c.CgroupPath, c.Resources = spec.Spec.Linux.CgroupsPath, spec.Spec.Linux.Resources
	}
	if spec.Spec.Process != nil {
		c.User = spec.Spec.Process.User
	}
	if err := m.saveContainer(c); err != nil {
		return err
	}
	m.failpoint("createcontainer:spec")
	pid, err := b.CreateContainer(ctx, pod, c, spec.Spec)
	if err != nil {
		return err
	}
	m.failpoint("createcontainer:runtime")
	c.Pid = pid
	return nil
}

// resolveImage finds the image the container's rootfs is made from. An
// image that names a checkpoint archive (a local file, as CRI-O takes it)
// or a checkpoint image (annotated as CRI-O's and containerd's are) is
// unpacked: the rootfs comes from the image it names, and the spec it was
// checkpointed with is returned.
func (m *Manager) resolveImage(ctx context.Context, c *Container) (ImageInfo, *specs.Spec, error) {
	var dumped *specs.Spec
	if ctrcheckpoint.IsArchive(c.ImageRef) {
		image, spec, err := m.unpackCheckpoint(ctx, c, "")
		if err != nil {
			return ImageInfo{}, nil, err
		}
		c.ImageRef, dumped = image, spec
	}
	img, err := m.opts.Images.Resolve(ctx, c.ImageRef)
	if err != nil {
		return ImageInfo{}, nil, fmt.Errorf("image %s: %w", c.ImageRef, err)
	}
	if dumped == nil && img.Annotations[ctrcheckpoint.ImageAnnotation] != "" {
		// A checkpoint image (kubelet's restore path): its layers are the
		// archive's files; the rootfs comes from the image they name.
		checkpointImage := img.ID
		image, spec, err := m.unpackCheckpoint(ctx, c, checkpointImage)
		if err != nil {
			return ImageInfo{}, nil, err
		}
		c.ImageRef, dumped = image, spec
		if img, err = m.opts.Images.Resolve(ctx, image); err != nil {
			return ImageInfo{}, nil, fmt.Errorf("image %s of checkpoint image %s: %w", image, checkpointImage, err)
		}
	}
	return img, dumped, nil
}

// buildSpec makes the container's OCI spec from its config, its pod and
// its image; the image's passwd and group files are read through an
// os.Root, so they cannot lead outside the rootfs.
func (m *Manager) buildSpec(ctx context.Context, pod *Pod, c *Container, cfg ctrconfig.Container, img ImageInfo) (oci.Result, error) {
	root, err := os.OpenRoot(c.Rootfs())
	if err != nil {
		return oci.Result{}, err
	}
	defer func() { _ = root.Close() }()
	host, err := m.hostFor(pod)
	if err != nil {
		return oci.Result{}, err
	}
	opts := []oci.Opt{oci.WithImageFS(root.FS()), oci.WithProfileLoader(readProfile), oci.WithDeviceLookup(m.opts.Devices)}
	if cfg.Security.Privileged {
		devs, err := m.opts.Devices.List()
		if err != nil {
			return oci.Result{}, fmt.Errorf("the host's devices for a privileged container: %w", err)
		}
		opts = append(opts, oci.WithHostDevices(devs...))
	}
	res, err := oci.Build(ctx, oci.Input{
		ID: c.ID, SandboxID: pod.ID, Config: cfg, Pod: pod.Config.ContainerPod(),
		Image: img.Config, ImageName: c.ImageRef, RootfsPath: c.Rootfs(),
		Namespaces: oci.PodNamespaces{Network: pod.NetNS, IPC: pod.NS["ipc"], UTS: pod.NS["uts"], PID: pod.NS["pid"],
			User: pod.NS["user"], TargetPID: c.targetPID},
		Files: oci.PodFiles{
			Hosts: filepath.Join(pod.Dir, HostsFile), ResolvConf: filepath.Join(pod.Dir, ResolvConfFile),
			Hostname: filepath.Join(pod.Dir, HostnameFile), Shm: pod.Shm,
		},
		CgroupParent: pod.Cgroup,
		Host:         host,
	}, opts...)
	if err != nil {
		return oci.Result{}, err
	}
	m.logDropped(ctx, pod, res.Dropped)
	if dropped := limitCapabilities(res.Spec, m.opts.AllowedCaps); len(dropped) > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("capabilities this node's runtime lacks were not granted: %v", dropped))
	}
	for _, w := range res.Warnings {
		m.log.WarnContext(ctx, "container spec", "container", c.ID, "warning", w)
	}
	return res, nil
}

// hostFor is what spec building knows of the host for a container of pod:
// its handler's features, the cgroup controllers its backend can give
// its containers.
func (m *Manager) hostFor(pod *Pod) (oci.Host, error) {
	h := m.opts.Host
	if f, ok := m.opts.Features[pod.Handler]; ok {
		h.RecursiveReadOnly, h.UserNamespaces = f.RecursiveReadOnlyMounts, f.UserNamespaces
	}
	b, err := m.backendOf(pod)
	if err != nil {
		return h, err
	}
	ctrl, err := b.ContainerControllers(pod)
	if err != nil {
		return h, fmt.Errorf("pod %s: %w", pod.ID, err)
	}
	h.Controllers = ctrl
	return h, nil
}

// logDropped logs, once per pod, the resources kubelet set that the pod's
// cgroup cannot enforce. Callers hold the pod's lock.
func (m *Manager) logDropped(ctx context.Context, pod *Pod, dropped []string) {
	for _, d := range dropped {
		if pod.logged[d] {
			continue
		}
		if pod.logged == nil {
			pod.logged = map[string]bool{}
		}
		pod.logged[d] = true
		m.log.InfoContext(ctx, "resource not enforced: this node's cgroups cannot hold it (kubelet sets it on every container)",
			"pod", pod.ID, "resource", d)
	}
}

// containerLogPath joins the pod's log directory and the container's log
// path, which must stay inside it. Every container gets an absolute log
// file: one created with no log path (crictl, critest) logs to <id>.log,
// and in a pod made with no log directory, under cradle's own (podLogDir).
// kubelet deletes `<reported log path>*` when it removes a container, so
// an empty path would be `*` in its working directory.
func (m *Manager) containerLogPath(pod *Pod, id string, cfg ctrconfig.Container) (string, error) {
	rel, dir := cfg.LogPath, pod.Config.LogDirectory
	if rel == "" {
		rel = id + ".log"
	}
	if dir == "" {
		dir = m.podLogDir(pod.ID)
	}
	p := filepath.Join(dir, rel)
	if filepath.IsAbs(rel) || !strings.HasPrefix(p, filepath.Clean(dir)+"/") {
		return "", fmt.Errorf("log path %q leaves the pod's log directory: %w", rel, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// podLogDir is where the logs of a pod made with no log directory go,
// derived from its ID alone, removed with the pod.
func (m *Manager) podLogDir(podID string) string { return filepath.Join(m.opts.LogDir, podID) }

// checkMountSources fails, before anything is made, when a bind mount's
// source does not exist (kubelet creates what hostPath volumes ask for).
func checkMountSources(mounts []ctrconfig.Mount) error {
	for _, mnt := range mounts {
		if !filepath.IsAbs(mnt.HostPath) {
			continue // the spec builder rejects it with its reason
		}
		if _, err := os.Stat(mnt.HostPath); err != nil {
			return fmt.Errorf("mount %q: source %q: %w: %w", mnt.ContainerPath, mnt.HostPath, err, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// targetPID is the PID namespace of the container an ephemeral container
// targets (PID mode TARGET): a running container of the same pod.
func (m *Manager) targetPID(podID string, cfg ctrconfig.Container) (string, error) {
	opts := cfg.Security.Namespaces
	if opts.PID != ctrconfig.NamespaceTarget {
		return "", nil
	}
	m.mu.Lock()
	e, ok := m.containers[opts.TargetID]
	m.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("target container %q: %w", opts.TargetID, errdefs.ErrNotFound)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c.PodID != podID {
		return "", fmt.Errorf("target container %q is not in pod %s: %w", opts.TargetID, podID, errdefs.ErrNotFound)
	}
	if e.c.State != ContainerRunning || e.c.Pid == 0 {
		return "", fmt.Errorf("target container %q is not running: %w", opts.TargetID, errdefs.ErrFailedPrecondition)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", e.c.Pid), nil
}

// saveContainer checkpoints c, and refreshes the snapshot events report it
// by. Callers hold its entry's lock.
func (m *Manager) saveContainer(c *Container) error {
	m.mu.Lock()
	if e := m.containers[c.ID]; e != nil && e.c == c {
		e.seen = *c
	}
	m.mu.Unlock()
	if err := m.ckpt.Save(containerKind, c.ID, containerCheckpointVersion, c); err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	return nil
}

// stopSignal picks the signal StopContainer sends first: the config's, else
// the image's, else SIGTERM.
func stopSignal(cfg ctrconfig.Container, image string) string {
	if cfg.StopSignal != "" {
		return cfg.StopSignal
	}
	if image != "" && unix.SignalNum(strings.ToUpper(image)) != 0 {
		return strings.ToUpper(image)
	}
	if image != "" && unix.SignalNum("SIG"+strings.ToUpper(image)) != 0 {
		return "SIG" + strings.ToUpper(image)
	}
	return "SIGTERM"
}

// readProfile loads a Localhost seccomp profile; kubelet names it by
// absolute path.
func readProfile(_ context.Context, ref string) ([]byte, error) {
	if !filepath.IsAbs(ref) {
		return nil, fmt.Errorf("seccomp profile %q is not an absolute path: %w", ref, errdefs.ErrInvalidArgument)
	}
	return os.ReadFile(ref)
}

// limitCapabilities keeps only the capabilities in allowed (the daemon's
// own: a runtime cannot grant what it lacks, and asking makes the OCI
// runtime fail with EPERM), and returns what it removed. A nil allowed
// keeps everything.
func limitCapabilities(spec *specs.Spec, allowed []string) []string {
	if allowed == nil || spec.Process == nil || spec.Process.Capabilities == nil {
		return nil
	}
	ok := make(map[string]bool, len(allowed))
	for _, c := range allowed {
		ok[c] = true
	}
	dropped := map[string]bool{}
	filter := func(set []string) []string {
		out := set[:0:0]
		for _, c := range set {
			if ok[c] {
				out = append(out, c)
			} else {
				dropped[c] = true
			}
		}
		return out
	}
	caps := spec.Process.Capabilities
	caps.Bounding, caps.Effective, caps.Permitted = filter(caps.Bounding), filter(caps.Effective), filter(caps.Permitted)
	caps.Inheritable, caps.Ambient = filter(caps.Inheritable), filter(caps.Ambient)
	out := make([]string, 0, len(dropped))
	for c := range dropped {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
