package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crashCell is one cell of the crash matrix: the daemon kills itself
// (CRADLE_FAILPOINT) when the engine completes step, inside the RPC that
// act makes; then it is started again and must be consistent, let
// everything be removed, and leak nothing.
type crashCell struct {
	step string
	// act builds what the RPC needs and makes the RPC that crashes.
	act func(c *crashRun)
	// after checks what the restarted daemon reports, before removal.
	after func(c *crashRun)
}

// crashRun is the state of one cell.
type crashRun struct {
	t       *testing.T
	d       *daemon
	k       *podKit
	image   string
	handler string
	tag     int    // the container's `sleep` argument: its process, found on the host
	ctr     string // the container made before the crashing RPC, if any
	vm      bool   // a microVM pod (its own PID namespaces: no infra process)
	// rro, when set, is a host directory (with a tmpfs under it) the
	// container mounts recursive read-only: on crun the daemon makes the
	// read-only tree, which a crash must not leak.
	rro string
}

func (c *crashRun) ctx() context.Context { return ctxT(c.t) }

// pod runs a pod that shares its PID namespace (so it has an infra
// process) with a hostPort; the RPC must succeed unless it is the one
// that crashes (final).
func (c *crashRun) pod(final bool) {
	cfg := podSandboxConfig(fmt.Sprintf("crash-%d", c.tag))
	if !c.vm {
		cfg = withPID(cfg, runtime.NamespaceMode_POD)
	}
	cfg.PortMappings = []*runtime.PortMapping{{ContainerPort: 80, HostPort: int32(18000 + c.tag%1000)}}
	cfg.LogDirectory = filepath.Join(c.d.dir, "kubelet-logs", strconv.Itoa(c.tag))
	resp, err := c.d.Runtime.RunPodSandbox(c.ctx(), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: c.handler})
	if err != nil && !final {
		c.t.Fatalf("RunPodSandbox: %v", err)
	}
	c.k = &podKit{t: c.t, d: c.d, ctx: c.ctx(), image: c.image, pod: resp.GetPodSandboxId(), podCfg: cfg}
}

func (c *crashRun) containerConfig() *runtime.ContainerConfig {
	// sleep ignores SIGWINCH: StopContainer goes on to SIGKILL.
	cfg := &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "sleeper"}, Image: spec(c.image),
		Command: []string{"sleep", strconv.Itoa(c.tag)}, Linux: &runtime.LinuxContainerConfig{}, StopSignal: runtime.Signal_SIGNAL_SIGWINCH}
	if c.rro != "" {
		cfg.Mounts = []*runtime.Mount{{ContainerPath: "/rro", HostPath: c.rro, Readonly: true, RecursiveReadOnly: true}}
	}
	return cfg
}

func (c *crashRun) create(final bool) {
	id, err := c.k.create(c.containerConfig())
	if err != nil && !final {
		c.t.Fatalf("CreateContainer: %v", err)
	}
	c.ctr = id
}

func (c *crashRun) start(final bool) {
	_, err := c.d.Runtime.StartContainer(c.ctx(), &runtime.StartContainerRequest{ContainerId: c.ctr})
	if final {
		return
	}
	if err != nil {
		c.t.Fatalf("StartContainer: %v", err)
	}
	waitFor(c.t, "the container's process", func() bool { return len(c.processes()) == 1 })
}

// processes are the host's processes of the cell's container.
func (c *crashRun) processes() []int {
	var out []int
	want := "sleep\x00" + strconv.Itoa(c.tag) + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && string(b) == want {
			out = append(out, pid)
		}
	}
	return out
}

// crashCells is the matrix: every named step of each multi-step RPC.
func crashCells() []crashCell {
	var cells []crashCell
	runPod := func(c *crashRun) { c.pod(true) }
	for _, s := range []string{"recorded", "pod files", "cgroup", "network namespace", "sandbox", "sysctls", "network", "sandbox network"} {
		cells = append(cells, crashCell{step: "runpod:" + s, act: runPod})
	}
	create := func(c *crashRun) { c.pod(false); c.create(true) }
	for _, s := range []string{"recorded", "rootfs", "mount", "spec", "monitor", "runtime"} {
		cells = append(cells, crashCell{step: "createcontainer:" + s, act: create})
	}
	// released: init was released through its exec FIFO, which is still
	// there (the runtime derives "created" from it); runtime: the start is
	// done.
	for _, s := range []string{"released", "runtime"} {
		cells = append(cells, crashCell{step: "startcontainer:" + s, act: func(c *crashRun) { c.pod(false); c.create(false); c.start(true) },
			after: func(c *crashRun) {
				// It runs: the restarted daemon must say so, and must not
				// start it a second time.
				if st := c.k.status(c.ctr); st.State != runtime.ContainerState_CONTAINER_RUNNING {
					c.t.Errorf("after a crash inside StartContainer: %v, and %d processes", st.State, len(c.processes()))
				}
				_, _ = c.d.Runtime.StartContainer(c.ctx(), &runtime.StartContainerRequest{ContainerId: c.ctr})
				if st := c.k.status(c.ctr); st.State != runtime.ContainerState_CONTAINER_RUNNING || len(c.processes()) != 1 {
					c.t.Errorf("StartContainer again: %v with %d processes, want RUNNING with 1", st.State, len(c.processes()))
				}
			}})
	}
	running := func(c *crashRun) { c.pod(false); c.create(false); c.start(false) }
	stop := func(c *crashRun) {
		running(c)
		_, _ = c.d.Runtime.StopContainer(c.ctx(), &runtime.StopContainerRequest{ContainerId: c.ctr, Timeout: 1})
	}
	for _, s := range []string{"signalled", "killed"} {
		cells = append(cells, crashCell{step: "stopcontainer:" + s, act: stop})
	}
	stopPod := func(c *crashRun) {
		running(c)
		_, _ = c.d.Runtime.StopPodSandbox(c.ctx(), &runtime.StopPodSandboxRequest{PodSandboxId: c.k.pod})
	}
	for _, s := range []string{"containers", "sandbox", "network"} {
		cells = append(cells, crashCell{step: "stoppod:" + s, act: stopPod})
	}
	removeCtr := func(c *crashRun) {
		running(c)
		_, _ = c.d.Runtime.RemoveContainer(c.ctx(), &runtime.RemoveContainerRequest{ContainerId: c.ctr})
	}
	for _, s := range []string{"runtime", "rootfs"} {
		cells = append(cells, crashCell{step: "removecontainer:" + s, act: removeCtr})
	}
	removePod := func(c *crashRun) {
		running(c)
		_, _ = c.d.Runtime.RemovePodSandbox(c.ctx(), &runtime.RemovePodSandboxRequest{PodSandboxId: c.k.pod})
	}
	for _, s := range []string{"containers", "sandbox", "network", "cgroup"} {
		cells = append(cells, crashCell{step: "removepod:" + s, act: removePod})
	}
	return cells
}

// TestCrashMatrix kills the daemon (SIGKILL, as a crash) at every named
// step of RunPodSandbox, CreateContainer, StartContainer, StopContainer,
// StopPodSandbox, RemoveContainer and RemovePodSandbox; after each, the
// restarted daemon's pods and containers match the host (a container it
// reports running runs, once; one it does not report runs nowhere), all
// of them can be removed, and the census of what pods hold on the host
// (mounts, netns, veths, cgroups, processes, checkpoints, IP leases,
// network records, snapshots, bundles, log directories, hostPort rules)
// is back where it was.
func TestCrashMatrix(t *testing.T) {
	d, image := startFeatureDaemon(t)
	rro := treeWithATmpfs(t)
	baseline := census(t, d)
	cells := crashCells()
	start := time.Now()
	for i, cell := range cells {
		for _, h := range []string{"runc", "crun"} {
			if h == "crun" && !strings.HasPrefix(cell.step, "startcontainer") && cell.step != "createcontainer:runtime" && cell.step != "createcontainer:monitor" {
				continue // crun: the cells where the runtime's own state matters
			}
			t.Run(strings.ReplaceAll(cell.step, " ", "_")+"/"+h, func(t *testing.T) {
				c := &crashRun{t: t, d: d, image: image, handler: h, tag: 990000 + i*10 + len(h)}
				if h == "crun" {
					c.rro = rro
				}
				crashAt(t, d, cell.step, func() { cell.act(c) })
				if c.k != nil {
					c.k.t, c.k.ctx = t, ctxT(t)
				}
				checkConsistent(t, d, c)
				if cell.after != nil && c.k != nil && c.ctr != "" {
					cell.after(c)
				}
				removeAll(t, d)
				if len(c.processes()) > 0 {
					t.Errorf("the container's process still runs after removal: %v", c.processes())
				}
				if diff := leakDiff(t, d, baseline); diff != "" {
					t.Errorf("leaked after the crash at %s (-before +after):\n%s", cell.step, diff)
				}
			})
		}
	}
	t.Logf("crash matrix: %d steps in %s", len(cells), time.Since(start).Round(time.Second))
}

// treeWithATmpfs is a directory with a tmpfs mounted under it, until the
// test ends.
func treeWithATmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sub := filepath.Join(dir, "tmpfs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
	return dir
}

// TestCrashMatrixVM: the pod steps of the crash matrix for microVM pods
// (QEMU and virtiofsd are the pod's processes; the census sees them by
// the daemon's directory in their command lines).
func TestCrashMatrixVM(t *testing.T) {
	d, image := newVMDaemon(t)
	baseline := census(t, d)
	start := time.Now()
	n := 0
	for i, cell := range crashCells() {
		if !strings.HasPrefix(cell.step, "runpod:") {
			continue
		}
		n++
		t.Run(strings.ReplaceAll(cell.step, " ", "_"), func(t *testing.T) {
			c := &crashRun{t: t, d: d, image: image, handler: "vm", tag: 970000 + i, vm: true}
			crashAt(t, d, cell.step, func() { cell.act(c) })
			checkConsistent(t, d, c)
			removeAll(t, d)
			if diff := leakDiff(t, d, baseline); diff != "" {
				t.Errorf("leaked after the crash at %s (-before +after):\n%s", cell.step, diff)
			}
		})
	}
	t.Logf("vm crash matrix: %d steps in %s", n, time.Since(start).Round(time.Second))
}

// TestCrashMatrixPull: the daemon dies at each step of PullImage (after a
// layer is unpacked, once everything is fetched, once the image is
// recorded); after the restart the same pull succeeds, the image can be
// removed, and no content, snapshot or ingest is left.
func TestCrashMatrixPull(t *testing.T) {
	d, _ := startFeatureDaemon(t)
	reg := fixtures.StartRegistry(t)
	ref := reg.Ref("crash/large:1")
	reg.Push(t, ref, fixtures.Large(t, 2, 1<<20))
	baseline := census(t, d)
	for _, step := range []string{"pullimage:layer", "pullimage:fetched", "pullimage:recorded"} {
		t.Run(step, func(t *testing.T) {
			crashAt(t, d, step, func() {
				_, _ = d.Images.PullImage(ctxT(t), &runtime.PullImageRequest{Image: spec(ref)})
			})
			if _, err := d.Images.PullImage(ctxT(t), &runtime.PullImageRequest{Image: spec(ref)}); err != nil {
				t.Fatalf("the same pull after the restart: %v", err)
			}
			if _, err := d.Images.RemoveImage(ctxT(t), &runtime.RemoveImageRequest{Image: spec(ref)}); err != nil {
				t.Fatal(err)
			}
			if diff := leakDiff(t, d, baseline); diff != "" {
				t.Errorf("leaked after the crash at %s (-before +after):\n%s", step, diff)
			}
		})
	}
}

// crashAt restarts the daemon armed to die at step, runs act (whose RPC
// must kill it), then starts it again unarmed.
func crashAt(t *testing.T, d *daemon, step string, act func()) {
	t.Helper()
	d.Stop()
	d.env = []string{"CRADLE_FAILPOINT=" + step}
	d.Start()
	act() // its last RPC fails as the daemon dies; a Fatal in it came before the step
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon did not die at %s", step)
	}
	if !d.killed() {
		t.Fatalf("the daemon exited (%v) instead of dying at %s", d.cmd.ProcessState, step)
	}
	d.conn.Close()
	d.cmd = nil
	d.env = nil
	d.Start()
}

// checkConsistent compares what the restarted daemon reports with the
// host: every container it reports running has its process, and no
// process runs that it does not report running.
func checkConsistent(t *testing.T, d *daemon, c *crashRun) {
	t.Helper()
	checkListed(t, d, func() []string {
		var out []string
		for _, pid := range c.processes() {
			out = append(out, strconv.Itoa(pid))
		}
		return out
	})
}

// checkListed: the pods the daemon lists answer, each listed container's
// pod is listed, and as many containers are listed running as processes
// (running returns them) run on the host.
func checkListed(t *testing.T, d *daemon, running func() []string) {
	t.Helper()
	ctx := ctxT(t)
	pods, err := d.Runtime.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if _, err := d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("PodSandboxStatus of listed pod %s: %v", p.Id, err)
		}
	}
	ctrs, err := d.Runtime.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for _, ctr := range ctrs.Containers {
		if !slices.ContainsFunc(pods.Items, func(p *runtime.PodSandbox) bool { return p.Id == ctr.PodSandboxId }) {
			t.Errorf("container %s listed under pod %s, which is not listed", ctr.Id, ctr.PodSandboxId)
		}
		if ctr.State == runtime.ContainerState_CONTAINER_RUNNING {
			listed++
		}
	}
	if procs := running(); len(procs) != listed {
		t.Errorf("%d containers reported running, %d processes on the host: %v", listed, len(procs), procs)
	}
}

// removeAll removes every pod and container the daemon lists, as kubelet's
// garbage collection would; each removal must succeed.
func removeAll(t *testing.T, d *daemon) {
	t.Helper()
	ctx := ctxT(t)
	ctrs, err := d.Runtime.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ctr := range ctrs.Containers {
		if _, err := d.Runtime.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: ctr.Id}); err != nil {
			t.Errorf("RemoveContainer %s: %v", ctr.Id, err)
		}
	}
	pods, err := d.Runtime.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("StopPodSandbox %s: %v", p.Id, err)
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("RemovePodSandbox %s: %v", p.Id, err)
		}
	}
}

// leakDiff compares the census with baseline, and gives the daemon's
// background work a few seconds to end (the snapshotter removes a
// snapshot's directory in a collection after RemoveContainer returns; on
// a loaded machine the census can come first): what is still there then
// has leaked.
func leakDiff(t *testing.T, d *daemon, baseline map[string][]string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		diff := cmp.Diff(baseline, census(t, d))
		if diff == "" || time.Now().After(deadline) {
			return diff
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// census lists what pods and containers hold on the host, by kind.
func census(t *testing.T, d *daemon) map[string][]string {
	t.Helper()
	out := map[string][]string{"mounts": testutil.Mounts(t, d.dir)}
	for name, dir := range map[string]string{
		"netns": "run/netns", "pod dirs": "run/pods", "bundles": "run/containers", "checkpoints/pods": "root/checkpoints/pods",
		"checkpoints/containers": "root/checkpoints/containers", "ip leases": "root/network/ipam/" + testBridge,
		"snapshots": "root/images/snapshots/snapshots", "pod logs": "root/logs",
		"content": "root/images/content/blobs/sha256", "ingests": "root/images/content/ingest",
	} {
		out[name] = testutil.Files(t, filepath.Join(d.dir, dir))
	}
	for _, h := range handlers {
		out["monitors/"+h] = testutil.Files(t, filepath.Join(d.dir, "run", "monitors", h))
		out["runtime/"+h] = testutil.Files(t, filepath.Join(d.dir, "run", "runtime", h))
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if l.Type() == "veth" {
			out["veths"] = append(out["veths"], l.Attrs().Name)
		}
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/cradle/*/")
	out["cgroups"] = cgroups
	// The allocator's lock and cursor are not leases.
	out["ip leases"] = slices.DeleteFunc(out["ip leases"], func(f string) bool { return f == "lock" || strings.HasPrefix(f, "last") })
	out["processes"] = cradleChildren(d)
	for k, v := range out {
		if len(v) == 0 {
			delete(out, k)
		}
	}
	return out
}

// cradleChildren lists the processes that cradle started for pods (infra
// processes, monitors, runtimes) by the daemon's directory in their
// command line or the pod ID in their environment.
func cradleChildren(d *daemon) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if strings.HasPrefix(string(cmd), cradleBin+"\x00") {
			continue
		}
		if strings.Contains(string(cmd), d.dir) || strings.Contains(string(env), "CRADLE_POD=") {
			out = append(out, strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}

// TestCorruptCheckpoints: the daemon dies with a pod and its running
// container, and one of their checkpoints is truncated, emptied or
// replaced with garbage; the restarted daemon lists nothing that does not
// match the host (a container whose pod is lost is killed, never left
// running untracked), everything can be removed, and nothing leaks.
func TestCorruptCheckpoints(t *testing.T) {
	d, image := startFeatureDaemon(t)
	baseline := census(t, d)
	corruptions := map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"empty":     func([]byte) []byte { return nil },
		"garbage":   func([]byte) []byte { return []byte("\x00\xffnot json at all{{{") },
	}
	i := 0
	for _, kind := range []string{"pods", "containers"} {
		for _, name := range []string{"truncated", "empty", "garbage"} {
			i++
			t.Run(kind+"/"+name, func(t *testing.T) {
				c := &crashRun{t: t, d: d, image: image, handler: "runc", tag: 980000 + i}
				c.pod(false)
				c.create(false)
				c.start(false)
				d.Kill9()
				id := c.k.pod
				if kind == "containers" {
					id = c.ctr
				}
				path := filepath.Join(d.Root, "checkpoints", kind, id+".json")
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, corruptions[name](b), 0o600); err != nil {
					t.Fatal(err)
				}
				d.Start()
				c.k.t, c.k.ctx = t, ctxT(t)
				checkConsistent(t, d, c)
				removeAll(t, d)
				if len(c.processes()) > 0 {
					t.Errorf("the container's process still runs: %v", c.processes())
				}
				if diff := leakDiff(t, d, baseline); diff != "" {
					t.Errorf("leaked (-before +after):\n%s", diff)
				}
			})
		}
	}
}

// TestCrashWhileTheRuntimeCreates: the daemon dies while conmon has the
// runtime create a container (conmon is a daemon of its own: it goes on),
// and the restarted daemon recovers before that create is done. The
// handler's runtime takes 3 s to start a create, so the recovery (which
// releases the container: its record says Creating) runs while it is under
// way. Nothing may be left once the create ends: no container in the
// runtime's state, no runc init, no cgroup, and the pod can be removed.
func TestCrashWhileTheRuntimeCreates(t *testing.T) {
	slow := filepath.Join(t.TempDir(), "slow-runc")
	script := "#!/bin/sh\n# runc, but a create waits first\nfor a in \"$@\"; do if [ \"$a\" = create ]; then sleep 3; break; fi; done\nexec " +
		testutil.RequireBinary(t, "runc") + " \"$@\"\n"
	if err := os.WriteFile(slow, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.RequireBinary(t, "conmon")
	reg := fixtures.StartRegistry(t)
	image := reg.Ref("busybox:1")
	reg.Push(t, image, fixtures.Busybox(t))
	d := newDaemon(t, fmt.Sprintf("[runtime.handlers.runc]\nkind = \"oci\"\nbinary = \"runc\"\n[runtime.handlers.slow]\nkind = \"oci\"\nbinary = %q\n", slow))
	if _, err := d.Images.PullImage(ctxT(t), &runtime.PullImageRequest{Image: spec(image)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		assertNoPodLeaks(t, d)
		assertNoContainerProcesses(t, d)
	})
	state := filepath.Join(d.dir, "run", "runtime", "slow")
	baseline := census(t, d)
	c := &crashRun{t: t, d: d, image: image, handler: "slow", tag: 989001}
	crashAt(t, d, "createcontainer:monitor", func() { c.pod(false); c.create(true) })
	c.k.t, c.k.ctx = t, ctxT(t)
	checkConsistent(t, d, c)
	removeAll(t, d)
	// The create the daemon lost track of has ended by now, whatever
	// became of it.
	waitFor(t, "the runtime's create to end", func() bool { return len(creating(slow, state)) == 0 })
	if got := testutil.Files(t, state); len(got) > 0 {
		t.Errorf("the runtime still has containers after everything was removed: %v", got)
	}
	if diff := leakDiff(t, d, baseline); diff != "" {
		t.Errorf("leaked after a crash while the runtime creates (-before +after):\n%s", diff)
	}
}

// creating lists the processes of a create by the runtime wrapper at slow
// (the wrapper itself, or the runtime it became, whose --root is state).
func creating(slow, state string) []string {
	var out []string
	for _, cmd := range cmdlines() {
		if strings.Contains(cmd, slow) || (strings.Contains(cmd, state) && strings.Contains(cmd, "\x00create\x00")) {
			out = append(out, strings.ReplaceAll(cmd, "\x00", " "))
		}
	}
	return out
}
