package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// counterScript counts, every 100 ms, in memory, in /counter (the
// container's writable layer, replaced whole so a reader never sees it
// empty) and on stdout.
const counterScript = `i=0; while :; do i=$((i+1)); echo $i > /counter.new; mv /counter.new /counter; echo $i; sleep 0.1; done`

// readCounter reads a container's /counter.
func readCounter(ctx context.Context, t *testing.T, d *daemon, id string) int {
	t.Helper()
	res, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/counter"}, Timeout: 10})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("read the counter of %s: %+v, %v", id, res, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	if err != nil {
		t.Fatalf("counter of %s is %q", id, res.Stdout)
	}
	return n
}

// archiveMember returns the contents of a member of a tar.
func archiveMember(t *testing.T, r io.Reader, name string) []byte {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("no %s in the archive", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(hdr.Name, "./") == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestCheckpointRestore: a running counter is checkpointed (it keeps
// running), and a container made from the archive in a new pod counts on
// from where the checkpoint was taken.
func TestCheckpointRestore(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCRIU(t)
	for _, tc := range []struct {
		name, handler string
		pid           runtime.NamespaceMode // the pods' PID namespace: the container's own, or the pod's (shared)
	}{
		{"runc", "runc", runtime.NamespaceMode_CONTAINER},
		{"runc in pods sharing their PID namespace", "runc", runtime.NamespaceMode_POD},
		{"crun", "crun", runtime.NamespaceMode_CONTAINER},
	} {
		t.Run(tc.name, func(t *testing.T) { testCheckpointRestore(t, tc.handler, tc.pid) })
	}
}

func testCheckpointRestore(t *testing.T, handler string, pid runtime.NamespaceMode) {
	d, image := busyboxDaemon(t, "")
	ctx := ctxT(t)
	podCfg := withPID(podSandboxConfig("ckpt-"+handler), pid)
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatal(err)
	}
	removePodAtEnd(t, d, pod.PodSandboxId)
	// With a volume (a hostPath bind mount), as kubelet's pods have: the
	// restored container gets its own pod's.
	orig := startCounter(ctx, t, d, pod.PodSandboxId, podCfg, spec(image), volume(t, "first"))
	waitFor(t, "the counter to reach 10", func() bool { return readCounter(ctx, t, d, orig) >= 10 })

	location := filepath.Join(t.TempDir(), "counter.tar")
	if handler == "crun" && !crunHasCRIU(t) {
		// Debian 12's crun is built without CRIU: refused, and nothing
		// is written.
		_, err := d.Runtime.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: orig, Location: location})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "CRIU") {
			t.Errorf("checkpoint through a crun without CRIU: %v, want FailedPrecondition naming CRIU", err)
		}
		if _, err := os.Stat(location); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("archive after a refused checkpoint: %v", err)
		}
		t.Logf("crun lacks CRIU support: checkpoint refused with %v", err)
		return
	}
	start := time.Now()
	if _, err := d.Runtime.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: orig, Location: location, Timeout: 60}); err != nil {
		t.Fatalf("CheckpointContainer: %v\n%s", err, d.Logs())
	}
	t.Logf("checkpoint took %v", time.Since(start))
	fi, err := os.Stat(location)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("archive: %d bytes", fi.Size())
	entries, _ := os.ReadDir(filepath.Dir(location))
	if len(entries) != 1 {
		t.Errorf("beside the archive: %v, want only it", entries)
	}
	data, err := os.ReadFile(location)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"config.dump", "spec.dump", "checkpoint/inventory.img", "stats-dump"} {
		archiveMember(t, bytes.NewReader(data), name)
	}
	// The counter at checkpoint time, from the archive's rootfs changes.
	diff := archiveMember(t, bytes.NewReader(data), "rootfs-diff.tar")
	atCheckpoint, err := strconv.Atoi(strings.TrimSpace(string(archiveMember(t, bytes.NewReader(diff), "counter"))))
	if err != nil || atCheckpoint < 10 {
		t.Fatalf("counter in the archive: %d, %v", atCheckpoint, err)
	}
	t.Logf("counter at checkpoint: %d", atCheckpoint)

	// The original keeps running and counting.
	before := readCounter(ctx, t, d, orig)
	waitFor(t, "the original to count on", func() bool { return readCounter(ctx, t, d, orig) > before })
	st, err := d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: orig})
	if err != nil || st.Status.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("original after checkpoint: %+v, %v", st.GetStatus(), err)
	}

	// A new pod, a container whose image is the archive.
	podCfg2 := withPID(podSandboxConfig("restored-"+handler), pid)
	pod2, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg2, RuntimeHandler: handler})
	if err != nil {
		t.Fatal(err)
	}
	removePodAtEnd(t, d, pod2.PodSandboxId)
	restored := startCounter(ctx, t, d, pod2.PodSandboxId, podCfg2, spec(location), volume(t, "second"))
	first := readCounter(ctx, t, d, restored)
	t.Logf("restored counter at first read: %d (original now %d)", first, readCounter(ctx, t, d, orig))
	if first < atCheckpoint {
		t.Errorf("restored counter %d is below the checkpoint's %d: it started over", first, atCheckpoint)
	}
	waitFor(t, "the restored counter to pass the checkpoint's", func() bool { return readCounter(ctx, t, d, restored) > atCheckpoint })
	st, err = d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: restored})
	if err != nil || st.Status.State != runtime.ContainerState_CONTAINER_RUNNING || st.Status.Image.GetImage() != image {
		t.Fatalf("restored status: %+v, %v", st.GetStatus(), err)
	}
	if res, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: restored, Cmd: []string{"cat", "/data/id"}}); err != nil || string(res.Stdout) != "second" {
		t.Errorf("the restored container's volume holds %q, %v; want its own pod's (second)", res.GetStdout(), err)
	}
	stats, err := d.Runtime.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: restored})
	if err != nil || stats.Stats.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || stats.Stats.GetMemory().GetWorkingSetBytes() == nil {
		t.Errorf("the restored container's stats (from its new cgroup): %+v, %v", stats.GetStats(), err)
	}
	// Its stdout reaches its own log, counting on from the checkpoint.
	want := fmt.Sprintf(" stdout F %d\n", atCheckpoint+1)
	waitFor(t, "the restored container's log to count on", func() bool {
		b, _ := os.ReadFile(st.Status.LogPath)
		return strings.Contains(string(b), want)
	})
	if b, _ := os.ReadFile(st.Status.LogPath); strings.Contains(string(b), " stdout F 1\n") {
		t.Errorf("the restored container's log starts over from 1")
	}

	// kubelet's restore path: the archive as a checkpoint OCI image (as
	// buildah makes it), pulled from a registry, in a third pod.
	reg := fixtures.StartRegistry(t)
	ckptRef := reg.Ref("checkpoint/counter:1")
	reg.Push(t, ckptRef, fixtures.CheckpointImage(t, data, "counter"))
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(ckptRef)}); err != nil {
		t.Fatalf("pull the checkpoint image: %v", err)
	}
	podCfg3 := withPID(podSandboxConfig("from-image-"+handler), pid)
	pod3, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg3, RuntimeHandler: handler})
	if err != nil {
		t.Fatal(err)
	}
	removePodAtEnd(t, d, pod3.PodSandboxId)
	fromImage := startCounter(ctx, t, d, pod3.PodSandboxId, podCfg3, spec(ckptRef), volume(t, "third"))
	if first := readCounter(ctx, t, d, fromImage); first < atCheckpoint {
		t.Errorf("counter restored from the checkpoint image %d is below the checkpoint's %d: it started over", first, atCheckpoint)
	}
	waitFor(t, "the counter restored from the image to pass the checkpoint's", func() bool { return readCounter(ctx, t, d, fromImage) > atCheckpoint })
	st3, err := d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: fromImage})
	if err != nil || st3.Status.State != runtime.ContainerState_CONTAINER_RUNNING || st3.Status.Image.GetImage() != image {
		t.Fatalf("status of the container restored from the image: %+v, %v", st3.GetStatus(), err)
	}

	// A restore CRIU refuses (the archive lost its inventory) fails
	// StartContainer, records the container exited, and leaves no process.
	broken := withoutMember(t, data, "checkpoint/inventory.img")
	bad, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod2.PodSandboxId, SandboxConfig: podCfg2,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "broken"}, Image: spec(broken)}})
	if err != nil {
		t.Fatalf("CreateContainer from the broken archive: %v", err)
	}
	_, err = d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: bad.ContainerId})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "CRIU's restore.log: ") {
		t.Errorf("restore without an inventory: %v, want FailedPrecondition quoting CRIU", err)
	}
	if st, err := d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: bad.ContainerId}); err != nil ||
		st.Status.State != runtime.ContainerState_CONTAINER_EXITED || st.Status.Reason != "StartError" {
		t.Errorf("status after a failed restore: %+v, %v", st.GetStatus(), err)
	}

	// Stopped and removed like any container; nothing is left.
	for _, p := range []string{pod.PodSandboxId, pod2.PodSandboxId, pod3.PodSandboxId} {
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p}); err != nil {
			t.Fatal(err)
		}
	}
	assertNoPodLeaks(t, d)
	assertNoContainerProcesses(t, d)
}

// volume makes a host directory holding the file id that says which it is,
// mounted at /data.
func volume(t *testing.T, id string) *runtime.Mount {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "id"), []byte(id), 0o644); err != nil {
		t.Fatal(err)
	}
	return &runtime.Mount{ContainerPath: "/data", HostPath: dir}
}

// startCounter creates and starts the counter (from an image or an
// archive) with mount, and returns its ID.
func startCounter(ctx context.Context, t *testing.T, d *daemon, pod string, podCfg *runtime.PodSandboxConfig, image *runtime.ImageSpec, mount *runtime.Mount) string {
	t.Helper()
	created, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "counter"}, Image: image,
			Command: []string{"sh", "-c", counterScript}, Mounts: []*runtime.Mount{mount}}})
	if err != nil {
		t.Fatalf("CreateContainer (image %s): %v", image.Image, err)
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		t.Fatalf("StartContainer (image %s): %v\n%s", image.Image, err, d.Logs())
	}
	return created.ContainerId
}

// withoutMember writes a copy of the tar data without the member name and
// returns its path.
func withoutMember(t *testing.T, data []byte, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "broken.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, tw := tar.NewReader(bytes.NewReader(data)), tar.NewWriter(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == name {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// crunHasCRIU reports whether crun was built with CRIU support.
func crunHasCRIU(t *testing.T) bool {
	out, err := exec.Command(testutil.RequireBinary(t, "crun"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(strings.Fields(string(out)), "+CRIU")
}

// removePodAtEnd removes the pod when the test ends, failed or not, while
// the daemon still runs.
func removePodAtEnd(t *testing.T, d *daemon, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("remove pod %s: %v", id, err)
		}
	})
}

// TestCheckpointErrors: what kubelet gets for bad requests, and that no
// failed checkpoint leaves a file.
func TestCheckpointErrors(t *testing.T) {
	d, image := busyboxDaemon(t, "")
	ctx := ctxT(t)
	podCfg := podSandboxConfig("ckpt-errors")
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	removePodAtEnd(t, d, pod.PodSandboxId)
	created, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "idle"}, Image: spec(image), Command: []string{"sleep", "1000"}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	loc := filepath.Join(dir, "c.tar")
	for _, tc := range []struct {
		name    string
		id, loc string
		want    codes.Code
	}{
		{"unknown container", "nosuchcontainer", loc, codes.NotFound},
		{"empty location", created.ContainerId, "", codes.InvalidArgument},
		{"relative location", created.ContainerId, "c.tar", codes.InvalidArgument},
		{"not running", created.ContainerId, loc, codes.FailedPrecondition},
		{"empty container ID", "", loc, codes.InvalidArgument},
	} {
		_, err := d.Runtime.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: tc.id, Location: tc.loc})
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// An image that is a file but no checkpoint archive is an image
	// reference like any other: not found.
	notArchive := filepath.Join(dir, "not.tar")
	if err := os.WriteFile(notArchive, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "junk"}, Image: spec(notArchive)}}); status.Code(err) == codes.OK {
		t.Error("a container was created from a file that is no checkpoint archive")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left: %v", entries)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	assertNoPodLeaks(t, d)
	assertNoContainerProcesses(t, d)
}

// TestCheckpointCrash: a daemon killed once CRIU has dumped the container,
// or once the whole archive is written but not yet in place, leaves no
// archive and, once started again, no work directory; the container runs
// on and can be checkpointed again.
func TestCheckpointCrash(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCRIU(t)
	for _, step := range []string{"checkpointcontainer:dumped", "checkpointcontainer:written"} {
		t.Run(step, func(t *testing.T) { testCheckpointCrash(t, step) })
	}
}

func testCheckpointCrash(t *testing.T, step string) {
	d, image := busyboxDaemon(t, "")
	ctx := ctxT(t)
	podCfg := podSandboxConfig("ckpt-crash")
	// runc: Debian's crun (the default handler where installed) has no CRIU.
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: "runc"})
	if err != nil {
		t.Fatal(err)
	}
	removePodAtEnd(t, d, pod.PodSandboxId)
	id, _ := startContainer(ctx, t, d, pod.PodSandboxId, "counter", image, counterScript)
	waitFor(t, "the counter to start", func() bool { return readCounter(ctx, t, d, id) >= 1 })
	out := t.TempDir()
	location := filepath.Join(out, "counter.tar")
	crashAt(t, d, step, func() {
		_, err := d.Runtime.CheckpointContainer(ctxT(t), &runtime.CheckpointContainerRequest{ContainerId: id, Location: location})
		if err == nil {
			t.Error("CheckpointContainer succeeded in a daemon that died in it")
		}
	})
	ctx = ctxT(t)
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("after the crash, the location's directory holds %v", entries)
	}
	bundle := filepath.Join(d.dir, "run", "containers", id)
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		t.Fatalf("the container's bundle: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(bundle, "checkpoint-*"))
	if len(left) != 0 {
		t.Errorf("work directories left after the restart: %v", left)
	}
	n := readCounter(ctx, t, d, id)
	waitFor(t, "the container to count on", func() bool { return readCounter(ctx, t, d, id) > n })
	if _, err := d.Runtime.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: id, Location: location}); err != nil {
		t.Fatalf("checkpoint after the restart: %v", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Errorf("after a checkpoint, the location's directory holds %v", entries)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	assertNoPodLeaks(t, d)
	assertNoContainerProcesses(t, d)
}

// TestCheckpointVMPod: a microVM pod's container is refused with
// FailedPrecondition that says why; nothing is written.
func TestCheckpointVMPod(t *testing.T) {
	d, image := newVMDaemon(t)
	k := newPodKit(t, d, image, "vm", podSandboxConfig("ckpt-vm"))
	id := k.run("sleeper", &runtime.ContainerConfig{}, "sleep", "1000")
	out := t.TempDir()
	_, err := d.Runtime.CheckpointContainer(ctxT(t), &runtime.CheckpointContainerRequest{ContainerId: id, Location: filepath.Join(out, "c.tar")})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "microVM") {
		t.Errorf("checkpoint of a vm pod's container: %v, want FailedPrecondition naming microVMs", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("written: %v", entries)
	}
}
