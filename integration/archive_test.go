package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
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
	if out, err := d.cli(t, "images", "rm", reg.Ref("busybox:1")); err != nil {
		t.Errorf("rm through the daemon: %v\n%s", err, out)
	}
	list, _ := d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if len(list.GetImages()) != 0 {
		t.Errorf("images after rm: %v", list.GetImages())
	}
}
