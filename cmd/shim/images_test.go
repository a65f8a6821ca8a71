//go:build !guest

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/cri"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
)

// testConfig writes a configuration whose root and socket are under a
// temporary directory and returns its path and the loaded configuration.
func testConfig(t *testing.T) (string, config.Config) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "cradle.toml")
	body := fmt.Sprintf("root = %q\nstate = %q\n[grpc]\nsocket = %q\n[metrics]\naddress = \"\"\n[images]\nregistry_config_dir = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "state", "cradle.sock"), filepath.Join(dir, "certs.d"))
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

// cli runs `cradle args…` in this process and returns stdout, stderr and
// the exit status.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	if err != nil {
		fmt.Fprintln(&errOut, "cradle:", err)
	}
	return out.String(), errOut.String(), exitCode(err)
}

// A command line that cannot run exits 2 before the store is opened: the
// image root is never created (nor locked).
func TestImagesUsageErrors(t *testing.T) {
	cfgPath, cfg := testConfig(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no subcommand", []string{"images"}, "no subcommand"},
		{"unknown subcommand", []string{"images", "bogus", "--config", cfgPath}, `unknown subcommand "bogus"`},
		{"unknown flag", []string{"images", "ls", "--config", cfgPath, "--bogus"}, "flag provided but not defined"},
		{"flag of another subcommand", []string{"images", "ls", "--config", cfgPath, "--force"}, "flag provided but not defined: -force"},
		{"ls with an argument", []string{"images", "ls", "--config", cfgPath, "extra"}, "takes no arguments"},
		{"rm without image", []string{"images", "rm", "--config", cfgPath}, "name at least one image"},
		{"import without archive", []string{"images", "import", "--config", cfgPath}, "name at least one archive"},
		{"export without -o", []string{"images", "export", "--config", cfgPath, "busybox"}, "give -o FILE"},
		{"pull of two images", []string{"images", "pull", "--config", cfgPath, "a", "b"}, "exactly one image"},
		{"pull with bad creds", []string{"images", "pull", "--config", cfgPath, "--creds", "alice", "a"}, "USER:PASSWORD"},
		{"bad log level", []string{"images", "ls", "--config", cfgPath, "--log-level", "loud"}, "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := cli(t, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr, tt.wantErr)
			}
			if _, err := os.Stat(cfg.Root); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the store was opened on a usage error: %s exists (%v)", cfg.Root, err)
			}
		})
	}
	if _, _, code := cli(t, "images", "rm", "-h"); code != 0 {
		t.Errorf("images rm -h: exit %d, want 0", code)
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args      []string
		wantPos   []string
		wantForce bool
	}{
		{[]string{"a", "b"}, []string{"a", "b"}, false},
		{[]string{"--force", "a"}, []string{"a"}, true},
		{[]string{"a", "--force", "b"}, []string{"a", "b"}, true},
		{[]string{"a", "--", "--force"}, []string{"a", "--force"}, false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		force := fs.Bool("force", false, "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || *force != tt.wantForce {
			t.Errorf("%q: force %t, %v", tt.args, *force, err)
		}
		if diff := cmp.Diff(tt.wantPos, pos); diff != "" {
			t.Errorf("%q: %s", tt.args, diff)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{usageErrorf("bad"), 2},
		{fmt.Errorf("wrapped: %w", usageErrorf("bad")), 2},
		{errors.New("failed"), 1},
		{fmt.Errorf("rm x: %w", errdefs.ErrNotFound), 1},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// With the daemon stopped: pull, list with human sizes, export, remove
// (and fail to remove what is not there), import; no fsverity noise.
func TestImagesOffline(t *testing.T) {
	testutil.RequireRoot(t)
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	ref := reg.Ref("busybox:1")
	cfgPath, _ := testConfig(t)

	out, stderr, code := cli(t, "images", "pull", "--config", cfgPath, ref)
	if code != 0 || !strings.HasPrefix(out, "pulled sha256:") || !strings.Contains(out, ref) {
		t.Fatalf("pull: exit %d\n%s%s", code, out, stderr)
	}
	id := strings.Fields(out)[1]
	for _, level := range []string{"warn", "info"} {
		out, stderr, code = cli(t, "images", "ls", "--config", cfgPath, "--log-level", level)
		if code != 0 || !strings.Contains(out, "SIZE") || !strings.Contains(out, shortID(id)) {
			t.Fatalf("ls: exit %d\n%s%s", code, out, stderr)
		}
		if strings.Contains(stderr, "fsverity") {
			t.Errorf("ls --log-level %s printed containerd's fsverity noise:\n%s", level, stderr)
		}
	}
	if fields := strings.Fields(strings.Split(out, "\n")[1]); len(fields) < 3 || !strings.HasSuffix(fields[2], "B") {
		t.Errorf("ls size is not human-readable: %q", out)
	}

	archive := filepath.Join(t.TempDir(), "busybox.tar")
	if out, stderr, code := cli(t, "images", "export", "--config", cfgPath, "-o", archive, ref); code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, out, stderr)
	}
	missing := filepath.Join(t.TempDir(), "missing.tar")
	if _, stderr, code := cli(t, "images", "export", "--config", cfgPath, "-o", missing, "nosuch:1"); code != 1 || !strings.Contains(stderr, "nosuch") {
		t.Errorf("export of a missing image: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(missing + ".partial"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed export left %s.partial", missing)
	}

	// rm: flags after the image; one missing image fails the command, the
	// other is still removed.
	out, stderr, code = cli(t, "images", "rm", "--config", cfgPath, "nosuch:1", ref)
	if code != 1 || !strings.Contains(stderr, "rm nosuch:1: no such image") || out != "removed "+ref+"\n" {
		t.Errorf("rm of a missing and a present image: exit %d\nstdout %q\nstderr %s", code, out, stderr)
	}
	out, stderr, code = cli(t, "images", "rm", ref, "--config", cfgPath)
	if code != 1 || strings.Contains(out, "removed") || !strings.Contains(stderr, "no such image") {
		t.Errorf("rm of a removed image: exit %d\nstdout %q\nstderr %s", code, out, stderr)
	}

	out, stderr, code = cli(t, "images", "import", "--config", cfgPath, archive)
	if code != 0 || !strings.Contains(out, "imported "+id) {
		t.Fatalf("import: exit %d\n%s%s", code, out, stderr)
	}
	out, _, _ = cli(t, "images", "ls", "--config", cfgPath, "-q")
	if strings.TrimSpace(out) != id {
		t.Errorf("ls -q after import = %q, want %s", out, id)
	}
	if _, stderr, code := cli(t, "images", "import", "--config", cfgPath, filepath.Join(t.TempDir(), "nope.tar")); code != 1 || !strings.Contains(stderr, "nope.tar") {
		t.Errorf("import of a missing file: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := cli(t, "images", "pull", "--config", cfgPath, reg.Ref("nosuch:1")); code != 1 || !strings.Contains(stderr, "not found") {
		t.Errorf("pull of a missing image: exit %d\n%s", code, stderr)
	}
}

// serveImages serves the CRI image service and the admin service of store
// on cfg's socket, as a running daemon does, with the store held (so the
// commands cannot take its lock and go through the socket).
func serveImages(t *testing.T, cfg config.Config, store *storage.Store) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(cfg.GRPC.Socket), 0o755); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("unix", cfg.GRPC.Socket)
	if err != nil {
		t.Fatal(err)
	}
	log := newLogger(cfg.Log, &testutil.Buffer{})
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(cri.UnaryInterceptor(log, nil)), grpc.ChainStreamInterceptor(cri.StreamInterceptor(log, nil)))
	cri.Register(g, cri.Deps{Config: cfg, Images: store})
	cri.RegisterAdmin(g, store, filepath.Join(cfg.Root, "tmp"), nil)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
}

// With the daemon running: the same commands go through its socket; pull
// reports progress; rm of an image that is not there fails.
func TestImagesThroughDaemon(t *testing.T) {
	testutil.RequireRoot(t)
	var slow atomic.Bool
	reg := fixtures.StartRegistry(t, fixtures.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slow.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				time.Sleep(1200 * time.Millisecond)
			}
			next.ServeHTTP(w, r)
		})
	}))
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	reg.Push(t, reg.Ref("slow:1"), fixtures.NonRoot(t, "1000"))
	ref := reg.Ref("busybox:1")
	cfgPath, cfg := testConfig(t)
	store, err := openImages(context.Background(), cfg, newLogger(cfg.Log, &testutil.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	serveImages(t, cfg, store)

	out, stderr, code := cli(t, "images", "pull", "--config", cfgPath, ref)
	if code != 0 || !strings.HasPrefix(out, "pulled sha256:") {
		t.Fatalf("pull through the daemon: exit %d\n%s%s", code, out, stderr)
	}
	id := strings.Fields(out)[1]
	if _, err := store.Get(context.Background(), ref); err != nil {
		t.Errorf("the daemon's store lacks the pulled image: %v", err)
	}
	out, _, code = cli(t, "images", "ls", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, shortID(id)) {
		t.Errorf("ls through the daemon: exit %d\n%s", code, out)
	}
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	if out, stderr, code := cli(t, "images", "export", "--config", cfgPath, "-o", archive, ref); code != 0 {
		t.Fatalf("export through the daemon: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := cli(t, "images", "import", "--config", cfgPath, archive); code != 0 || !strings.Contains(out, id) {
		t.Errorf("import through the daemon: exit %d\n%s%s", code, out, stderr)
	}
	_, stderr, code = cli(t, "images", "rm", "--config", cfgPath, "nosuch:1")
	if code != 1 || !strings.Contains(stderr, "no such image") {
		t.Errorf("rm of a missing image through the daemon: exit %d\n%s", code, stderr)
	}
	_, stderr, code = cli(t, "images", "pull", "--config", cfgPath, reg.Ref("nosuch:1"))
	if code != 1 || !strings.Contains(stderr, "NotFound") || !strings.Contains(stderr, "(daemon request ") {
		t.Errorf("pull of a missing image through the daemon: exit %d\n%s", code, stderr)
	}

	// A slow pull reports progress from the daemon.
	slow.Store(true)
	d, err := dialDaemon(cfg.GRPC.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	// A failed unary call names the request the daemon logged it under,
	// and keeps its class.
	if _, err := d.get(context.Background(), ""); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "(daemon request ") {
		t.Errorf("ImageStatus of no image: %v", err)
	}
	var reports atomic.Int64
	row, err := d.pull(context.Background(), reg.Ref("slow:1"), nil, func(int64) { reports.Add(1) })
	if err != nil || !strings.HasPrefix(row.ID, "sha256:") {
		t.Fatalf("slow pull: %+v, %v", row, err)
	}
	if reports.Load() < 2 { // at least one while it ran, and the last
		t.Errorf("slow pull reported progress %d times", reports.Load())
	}
}
