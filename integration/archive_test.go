package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cli runs `cradle <args[0]> <args[1]> --config <d's config> <args[2:]…>`
// and returns its standard output, with standard error after it when the
// command fails.
func (d *daemon) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	full := append([]string{args[0], args[1], "--config", d.config}, args[2:]...)
	cmd := exec.Command(cradleBin, full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// Export from a running daemon, wipe the store, import with the daemon
// stopped, start with no registry: the image is there, under its names.
func TestExportWipeImportOffline(t *testing.T) {
	testutil.RequireBinary(t, "conmon")
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	d := newDaemon(t, "")
	ctx := ctxT(t)
	pulled, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("busybox:1"))})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	if out, err := d.cli(t, "images", "export", "-o", archive, reg.Ref("busybox:1")); err != nil {
		t.Fatalf("export through the daemon: %v\n%s", err, out)
	}
	// Through the daemon, a corrupt archive fails and changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.tar")
	b, _ := os.ReadFile(archive)
	os.WriteFile(bad, b[:len(b)/2], 0o644)
	if out, err := d.cli(t, "images", "import", bad); err == nil || !strings.Contains(out, "InvalidArgument") {
		t.Errorf("import of a truncated archive through the daemon: %v\n%s", err, out)
	}

	d.Stop()
	if err := os.RemoveAll(d.Root); err != nil {
		t.Fatal(err)
	}
	if out, err := d.cli(t, "images", "import", bad); err == nil {
		t.Errorf("offline import of a truncated archive succeeded:\n%s", out)
	}
	if out, err := d.cli(t, "images", "import", archive); err != nil || !strings.Contains(out, pulled.ImageRef) {
		t.Fatalf("offline import: %v\n%s", err, out)
	}
	if out, err := d.cli(t, "images", "ls", "-q"); err != nil || strings.TrimSpace(out) != pulled.ImageRef {
		t.Errorf("offline ls: %v\n%s", err, out)
	}

	reg.Close()
	d.Start()
	st, err := d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(reg.Ref("busybox:1"))})
	if err != nil || st.Image == nil || st.Image.Id != pulled.ImageRef {
		t.Fatalf("imported image after restart with no registry: %v, %v", st, err)
	}
	// A pod runs from the imported image, with no registry anywhere.
	{
		podCfg := podSandboxConfig("offline")
		pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		ctr, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "main"}, Image: spec(reg.Ref("busybox:1")), Command: []string{"sleep", "1000"}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
			t.Fatal(err)
		}
		res, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"echo", "baked"}})
		if err != nil || string(res.Stdout) != "baked\n" {
			t.Errorf("exec in the pod from the imported image: %+v, %v", res, err)
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
		assertNoContainerProcesses(t, d)
	}
	if out, err := d.cli(t, "images", "rm", reg.Ref("busybox:1")); err != nil {
		t.Errorf("rm through the daemon: %v\n%s", err, out)
	}
	list, _ := d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if len(list.GetImages()) != 0 {
		t.Errorf("images after rm: %v", list.GetImages())
	}
}

// The bake-in path: archives in the preload directory are imported at
// start, pinned images are reported pinned and RemoveImage refuses them.
func TestPreloadDirectoryAndPinnedImages(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	reg.Push(t, reg.Ref("app:1"), fixtures.NonRoot(t, "1000"))
	d := newDaemon(t, fmt.Sprintf("pinned = [%q]\n", reg.Ref("busybox:1")))
	ctx := ctxT(t)
	for _, r := range []string{"busybox:1", "app:1"} {
		if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref(r))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(d.Preload, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := d.cli(t, "images", "export", "-o", filepath.Join(d.Preload, "node.tar"), reg.Ref("busybox:1"), reg.Ref("app:1")); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	d.Stop()
	os.RemoveAll(d.Root)
	reg.Close()
	d.Start()
	// The daemon serves first and imports after: RuntimeReady says when.
	waitRuntimeReady(t, d)

	list, err := d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil || len(list.Images) != 2 {
		t.Fatalf("preloaded images: %v, %v", list, err)
	}
	st, _ := d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(reg.Ref("busybox:1"))})
	if !st.GetImage().GetPinned() {
		t.Errorf("pinned image reported %+v", st.GetImage())
	}
	_, err = d.Images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec(reg.Ref("busybox:1"))})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RemoveImage of a pinned image: %v, want FailedPrecondition", err)
	}
	if _, err := d.Images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec(reg.Ref("app:1"))}); err != nil {
		t.Errorf("RemoveImage of an unpinned image: %v", err)
	}
	// Restarting does not import the unchanged archive again.
	d.Stop()
	d.Start()
	waitRuntimeReady(t, d)
	list, _ = d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if len(list.GetImages()) != 1 {
		t.Errorf("after restart: %d images, want the removed one to stay removed", len(list.GetImages()))
	}
	d.Stop()
	if out, err := d.cli(t, "images", "rm", "--force", reg.Ref("busybox:1")); err != nil {
		t.Errorf("forced offline removal: %v\n%s", err, out)
	}
	d.Start()
}

// `cradle images pull` through the running daemon, then offline; rm of an
// image that is not there fails in both, and rm through the daemon of one
// that is removes it.
func TestImagesPullCLI(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	reg.Push(t, reg.Ref("app:1"), fixtures.NonRoot(t, "1000"))
	d := newDaemon(t, "")
	ctx := ctxT(t)
	out, err := d.cli(t, "images", "pull", reg.Ref("busybox:1"))
	if err != nil || !strings.HasPrefix(out, "pulled sha256:") {
		t.Fatalf("pull through the daemon: %v\n%s", err, out)
	}
	st, err := d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(reg.Ref("busybox:1"))})
	if err != nil || st.Image == nil || !strings.Contains(out, st.Image.Id) {
		t.Fatalf("pulled image: %v, %v (cli said %q)", st, err, out)
	}
	if out, err := d.cli(t, "images", "rm", reg.Ref("nosuch:1")); err == nil || !strings.Contains(out, "no such image") || strings.Contains(out, "removed") {
		t.Errorf("rm of a missing image through the daemon: %v\n%s", err, out)
	}
	if out, err := d.cli(t, "images", "rm", reg.Ref("busybox:1")); err != nil || !strings.Contains(out, "removed") {
		t.Errorf("rm through the daemon: %v\n%s", err, out)
	}
	d.Stop()
	if out, err := d.cli(t, "images", "pull", reg.Ref("app:1")); err != nil || !strings.HasPrefix(out, "pulled sha256:") {
		t.Fatalf("offline pull: %v\n%s", err, out)
	}
	if out, err := d.cli(t, "images", "rm", reg.Ref("busybox:1")); err == nil || !strings.Contains(out, "no such image") {
		t.Errorf("offline rm of a removed image: %v\n%s", err, out)
	}
	d.Start()
	st, err = d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(reg.Ref("app:1"))})
	if err != nil || st.Image == nil {
		t.Errorf("image pulled offline, after start: %v, %v", st, err)
	}
}

// waitRuntimeReady waits for the CRI Status to say RuntimeReady (the
// bake-in images imported), and checks the reason it gives until then.
func waitRuntimeReady(t *testing.T, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := d.Runtime.Status(ctxT(t), &runtime.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.Type != runtime.RuntimeReady {
				continue
			}
			if c.Status {
				return
			}
			if c.Reason != "PreloadInProgress" {
				t.Fatalf("runtime not ready: %s: %s", c.Reason, c.Message)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the bake-in images were not imported within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
