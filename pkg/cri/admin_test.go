package cri

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/cri/adminapi"
	"github.com/cradle-runtime/cradle/pkg/metrics"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// serveAdmin serves the admin service of a fresh store behind the daemon's
// stream interceptor, and returns its client and the daemon's log.
func serveAdmin(t *testing.T, m *metrics.Metrics) (adminapi.ImagesClient, *testutil.Buffer) {
	t.Helper()
	testutil.RequireRoot(t) // the store's overlayfs snapshotter
	root := t.TempDir()
	store, err := storage.Open(context.Background(), storage.Options{
		Root:                  filepath.Join(root, "images"),
		RegistryConfigDir:     filepath.Join(root, "certs.d"),
		DialTimeout:           5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		PullProgressTimeout:   30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = store.Close()
		testutil.AssertNoMounts(t, root)
	})
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g := grpc.NewServer(grpc.ChainStreamInterceptor(StreamInterceptor(log, m)))
	RegisterAdmin(g, store, filepath.Join(root, "tmp"), m)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///admin", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return adminapi.NewImagesClient(conn), logs
}

// drain reads a server stream to its end: the chunks' sizes, and the error
// that ended it (nil for io.EOF).
func drain[T any](recv func() (*T, error), size func(*T) int) ([]int, error) {
	var sizes []int
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return sizes, nil
		}
		if err != nil {
			return sizes, err
		}
		sizes = append(sizes, size(m))
	}
}

func exportSizes(ctx context.Context, c adminapi.ImagesClient, images []string, w io.Writer) ([]int, error) {
	s, err := c.Export(ctx, &adminapi.ExportRequest{Images: images})
	if err != nil {
		return nil, err
	}
	return drain(s.Recv, func(m *adminapi.ExportChunk) int { _, _ = w.Write(m.GetData()); return len(m.GetData()) })
}

func importArchive(ctx context.Context, c adminapi.ImagesClient, archive []byte, base string, chunk int) (*adminapi.ImportResponse, error) {
	s, err := c.Import(ctx)
	if err != nil {
		return nil, err
	}
	req := &adminapi.ImportRequest{BaseName: base}
	for first := true; first || len(archive) > 0; first = false {
		n := min(chunk, len(archive))
		req.Data, archive = archive[:n], archive[n:]
		if err := s.Send(req); err != nil {
			break // CloseAndRecv says why
		}
		req.BaseName = "" // read from the first message only
	}
	return s.CloseAndRecv()
}

// A bad request gets the code of its class, as it did when the service
// spoke JSON: what `cradle images` and the integration tests rely on.
func TestAdminBadRequestCodes(t *testing.T) {
	c, _ := serveAdmin(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"pull of no image", func() error {
			s, err := c.Pull(ctx, &adminapi.PullRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.InvalidArgument},
		{"pull of a bad reference", func() error {
			s, err := c.Pull(ctx, &adminapi.PullRequest{Image: "Bad::Ref"})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.InvalidArgument},
		{"export of no image", func() error {
			_, err := exportSizes(ctx, c, nil, io.Discard)
			return err
		}, codes.InvalidArgument},
		{"export of an empty name", func() error {
			_, err := exportSizes(ctx, c, []string{""}, io.Discard)
			return err
		}, codes.InvalidArgument},
		{"export of an unknown image", func() error {
			_, err := exportSizes(ctx, c, []string{"example.com/nosuch:1"}, io.Discard)
			return err
		}, codes.NotFound},
		{"import of a file that is no archive", func() error {
			_, err := importArchive(ctx, c, []byte("not a tar"), "", 4)
			return err
		}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if got := status.Code(err); got != tc.want {
				t.Errorf("code %s (%v), want %s", got, err, tc.want)
			}
		})
	}
}

// Pull with a credential, export in chunks of adminChunk, import with a
// base name from the first message; the password never reaches the log and
// the pull is counted.
func TestAdminPullExportImport(t *testing.T) {
	reg := fixtures.StartRegistry(t, fixtures.WithBasicAuth("alice", "s3cret"))
	ref := reg.Ref("private/busybox:1")
	reg.Push(t, ref, fixtures.Busybox(t))
	m := metrics.New()
	c, logs := serveAdmin(t, m)
	ctx := context.Background()

	pull := func(password string) ([]*adminapi.PullProgress, error) {
		s, err := c.Pull(ctx, &adminapi.PullRequest{Image: ref, Username: "alice", Password: password})
		if err != nil {
			return nil, err
		}
		var got []*adminapi.PullProgress
		_, err = drain(s.Recv, func(p *adminapi.PullProgress) int { got = append(got, p); return 0 })
		return got, err
	}
	if _, err := pull("wrong-password"); status.Code(err) == codes.OK {
		t.Error("pull with a wrong password succeeded")
	}
	progress, err := pull("s3cret")
	if err != nil || len(progress) == 0 {
		t.Fatalf("pull: %v, %v", progress, err)
	}
	last := progress[len(progress)-1]
	if !strings.HasPrefix(last.GetImageId(), "sha256:") || last.GetBytes() <= 0 {
		t.Errorf("last progress %v, want the image and its bytes", last)
	}
	for _, secret := range []string{"s3cret", "wrong-password"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the daemon logged a password:\n%s", logs.String())
		}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`cradle_image_pulls_total{result="failure"} 1`, `cradle_image_pulls_total{result="success"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	var archive bytes.Buffer
	sizes, err := exportSizes(ctx, c, []string{ref}, &archive)
	if err != nil || len(sizes) == 0 {
		t.Fatalf("export: %v, %v", sizes, err)
	}
	for i, n := range sizes {
		if n > adminChunk || (i < len(sizes)-1 && n != adminChunk) || n == 0 {
			t.Errorf("export chunk sizes %v: all but the last must be %d", sizes, adminChunk)
			break
		}
	}
	// Name the images by tag only, so they need the base name.
	tagOnly := rewriteIndex(t, archive.Bytes(), func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte(`"io.containerd.image.name"`), []byte(`"x-ignored"`))
	})
	if _, err := importArchive(ctx, c, tagOnly, "", 64<<10); status.Code(err) != codes.InvalidArgument {
		t.Errorf("tag-only import without a base name: %v", err)
	}
	resp, err := importArchive(ctx, c, tagOnly, "example.com/copy", 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if imgs := resp.GetImages(); len(imgs) != 1 || imgs[0].GetId() != last.GetImageId() ||
		!slices.Contains(imgs[0].GetRepoTags(), "example.com/copy:1") {
		t.Errorf("imported %v, want %s as example.com/copy:1", imgs, last.GetImageId())
	}
}

// rewriteIndex returns the tar archive with its index.json edited.
func rewriteIndex(t *testing.T, archive []byte, edit func([]byte) []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(archive)), tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "index.json" {
			b = edit(b)
			hdr.Size = int64(len(b))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
