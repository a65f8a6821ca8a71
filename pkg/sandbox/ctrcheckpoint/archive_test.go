package ctrcheckpoint

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// members lists an archive's member names and the contents of its
// regular files.
func members(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[hdr.Name] = string(b)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteThenExtractAndApply(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	images, upper, work := filepath.Join(base, "images"), filepath.Join(base, "upper"), filepath.Join(base, "work")
	writeFiles(t, images, map[string]string{"pstree.img": "tree", "pages-1.img": "pages", StatsDump: "stats"})
	writeFiles(t, upper, map[string]string{"data/counter": "42", "etc/motd": "hi"})
	if err := os.Symlink("counter", filepath.Join(upper, "data/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	whiteout := os.Geteuid() == 0 // mknod of a 0:0 device needs CAP_MKNOD
	if whiteout {
		if err := unix.Mknod(filepath.Join(upper, "etc/gone"), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
	}
	loc := filepath.Join(base, "out", "ckpt.tar")
	if err := os.Mkdir(filepath.Dir(loc), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: "abc", Name: "c_p_ns_uid_0", RootfsImageName: "busybox:latest", RootfsImageRef: "sha256:1",
		CreatedTime: time.Unix(1, 0).UTC(), CheckpointedTime: time.Unix(2, 0).UTC()}
	if err := Write(ctx, loc, Source{Config: cfg, Spec: []byte(`{"ociVersion":"1.0.2"}`), Images: images, RootfsUpper: upper}, work); err != nil {
		t.Fatal(err)
	}
	got := members(t, loc)
	for _, name := range []string{"checkpoint/", "checkpoint/pstree.img", "checkpoint/pages-1.img", ConfigDump, SpecDump, RootfsDiff, DeletedFiles, StatsDump} {
		if _, ok := got[name]; !ok {
			t.Errorf("archive lacks %s; has %v", name, keys(got))
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(loc)); len(entries) != 1 {
		t.Errorf("beside the archive: %v, want only it", entries)
	}
	if !IsArchive(loc) || IsArchive("busybox:latest") || IsArchive(filepath.Join(images, "pstree.img")) {
		t.Error("IsArchive tells archives from image references and other files wrongly")
	}

	dir := t.TempDir()
	gotCfg, spec, err := Extract(ctx, loc, dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cfg, gotCfg); diff != "" {
		t.Errorf("config.dump (-want +got):\n%s", diff)
	}
	if string(spec) != `{"ociVersion":"1.0.2"}` {
		t.Errorf("spec.dump = %s", spec)
	}
	if b, err := os.ReadFile(filepath.Join(dir, ImagesDir, "pages-1.img")); err != nil || string(b) != "pages" {
		t.Errorf("CRIU image = %q, %v", b, err)
	}

	rootfs := t.TempDir()
	writeFiles(t, rootfs, map[string]string{"etc/gone": "image file", "bin/sh": "shell"})
	if err := ApplyRootfsDiff(ctx, dir, rootfs); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "data/link")); err != nil || string(b) != "42" {
		t.Errorf("data/link reads %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "bin/sh")); err != nil {
		t.Errorf("an unchanged image file is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "etc/gone")); whiteout && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file the container deleted is back: %v", err)
	}
	var deleted []string
	if err := json.Unmarshal([]byte(got[DeletedFiles]), &deleted); err != nil {
		t.Fatal(err)
	}
	if whiteout && !cmp.Equal(deleted, []string{"/etc/gone"}) {
		t.Errorf("deleted.files = %v", deleted)
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// A failed write leaves nothing at the location nor beside it.
func TestWriteFailureLeavesNothing(t *testing.T) {
	base := t.TempDir()
	out := filepath.Join(base, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	loc := filepath.Join(out, "ckpt.tar")
	src := Source{Spec: []byte("{}"), Images: filepath.Join(base, "missing")}
	if err := Write(context.Background(), loc, src, base); err == nil {
		t.Fatal("Write of missing CRIU images succeeded")
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	writeFiles(t, filepath.Join(base, "images"), map[string]string{"a.img": "a"})
	src.Images = filepath.Join(base, "images")
	if err := Write(ctx, loc, src, base); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with an ended context: %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	if err := Write(ctx, "rel/ckpt.tar", Source{}, t.TempDir()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative location: %v, want InvalidArgument", err)
	}
	// An archive whose members would leave the directory they are
	// unpacked into, and that lacks config.dump.
	bad := filepath.Join(t.TempDir(), "bad.tar")
	f, err := os.Create(bad)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, name := range []string{"../escape", "/abs/escape", SpecDump} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: 2, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte("{}"))
	}
	_ = tw.Close()
	_ = f.Close()
	parent := t.TempDir()
	dir := filepath.Join(parent, "x")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Extract(ctx, bad, dir); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Extract without config.dump: %v, want InvalidArgument", err)
	}
	if _, err := os.Stat(filepath.Join(parent, "escape")); err == nil {
		t.Error("a member left the directory")
	}
	for _, name := range []string{"..", "../a", "/", "."} {
		if _, ok := local(name); ok {
			t.Errorf("local(%q) accepted", name)
		}
	}
}

// crashEnv names the directory a re-executed test binary writes an
// archive's temporary file in before it kills itself.
const crashEnv = "CTRCHECKPOINT_CRASH_DIR"

// A writer killed mid-write leaves nothing in the archive's directory.
func TestCrashMidWriteLeavesNothing(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		f, err := openTemp(filepath.Join(dir, "c.tar"))
		if err != nil {
			os.Exit(3)
		}
		_, _ = f.Write(make([]byte, 1<<20))
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
		select {}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidWriteLeavesNothing$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("writer: %v, want killed", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a killed writer left %v", entries)
	}
}

// TestRootfsDiffOfARunningContainer: with --leave-running the container
// goes on writing its files while the diff walks its layer: a file that
// vanishes, shrinks or grows between the directory read and the copy is
// taken as it is then, or left out, and the tar stays well formed (the
// counter in the integration tests renames a file ten times a second).
func TestRootfsDiffOfARunningContainer(t *testing.T) {
	upper := t.TempDir()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := filepath.Join(upper, fmt.Sprintf("f%d", i%50))
			_ = os.WriteFile(name+".new", bytes.Repeat([]byte("x"), i%5000), 0o644)
			_ = os.Rename(name+".new", name)
			if i%3 == 0 {
				_ = os.Remove(filepath.Join(upper, fmt.Sprintf("f%d", (i+25)%50)))
			}
			if i%7 == 0 {
				_ = os.Truncate(filepath.Join(upper, fmt.Sprintf("f%d", (i+10)%50)), int64(i%100))
			}
		}
	}()
	defer func() { close(stop); <-done }()
	out := filepath.Join(t.TempDir(), "diff.tar")
	for i := 0; i < 200; i++ {
		if _, err := writeRootfsDiff(context.Background(), out, upper); err != nil {
			t.Fatalf("walk %d: %v", i, err)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(f)
		for {
			if _, err := tr.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("walk %d: the tar is broken: %v", i, err)
			}
			if _, err := io.Copy(io.Discard, tr); err != nil {
				t.Fatalf("walk %d: the tar is broken: %v", i, err)
			}
		}
		_ = f.Close()
	}
}

// What a running container puts in place of a file the walk saw as
// regular is left out: a symlink (even one out of the tree) is not
// followed, a FIFO is not blocked on, a vanished file is no error.
func TestOpenRegularLeavesOutWhatIsNoLongerAFile(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("ok"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, name := range []string{"abs", "rel", "fifo", "gone"} {
		f, _, err := openRegular(root, name)
		if f != nil || err != nil {
			t.Errorf("%s: file %v, err %v; want it left out", name, f, err)
		}
	}
	f, fi, err := openRegular(root, "file")
	if err != nil || f == nil || fi.Size() != 2 {
		t.Fatalf("file: %v, %v, %v", f, fi, err)
	}
	f.Close()
}
