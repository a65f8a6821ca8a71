//go:build !guest

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cri"
	"github.com/cradle-runtime/cradle/pkg/cri/adminapi"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/testing/protocmp"
)

// fakeAdmin records what the client sends and answers as the daemon would.
type fakeAdmin struct {
	adminapi.UnimplementedImagesServer
	mu      sync.Mutex
	imports [][]*adminapi.ImportRequest // messages of each Import
	pulls   []*adminapi.PullRequest
	export  []byte // what Export streams, in chunks of 3 bytes
	fail    error  // Import's answer, when set
}

func (f *fakeAdmin) Import(s grpc.ClientStreamingServer[adminapi.ImportRequest, adminapi.ImportResponse]) error {
	var msgs []*adminapi.ImportRequest
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	f.mu.Lock()
	f.imports = append(f.imports, msgs)
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		return fail
	}
	return s.SendAndClose(&adminapi.ImportResponse{Images: []*adminapi.ImportedImage{{Id: "sha256:1", RepoTags: []string{"example.com/app:1"}}}})
}

func (f *fakeAdmin) Export(req *adminapi.ExportRequest, s grpc.ServerStreamingServer[adminapi.ExportChunk]) error {
	if len(req.GetImages()) != 2 {
		return fmt.Errorf("export of %v: %w", req.GetImages(), errdefs.ErrInvalidArgument)
	}
	for b := f.export; len(b) > 0; b = b[min(3, len(b)):] {
		if err := s.Send(&adminapi.ExportChunk{Data: b[:min(3, len(b))]}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeAdmin) Pull(req *adminapi.PullRequest, s grpc.ServerStreamingServer[adminapi.PullProgress]) error {
	f.mu.Lock()
	f.pulls = append(f.pulls, req)
	f.mu.Unlock()
	for _, p := range []*adminapi.PullProgress{{Bytes: 10}, {Bytes: 20}, {Bytes: 30, ImageId: "sha256:2"}} {
		if err := s.Send(p); err != nil {
			return err
		}
	}
	return nil
}

func serveFakeAdmin(t *testing.T, f *fakeAdmin) *daemonBackend {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "cradle.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainStreamInterceptor(cri.StreamInterceptor(slog.New(slog.DiscardHandler), nil)))
	adminapi.RegisterImagesServer(g, f)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	d, err := dialDaemon(socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.close() })
	return d
}

// The client's side of the admin protocol: Import sends the base name in
// its first message (also for an empty archive) and the file in chunks of
// 1 MiB; Export writes what arrives; Pull sends the credential and reports
// progress; a failed call keeps its class and names the daemon's request.
func TestDaemonAdminClient(t *testing.T) {
	f := &fakeAdmin{export: []byte("an archive of images")}
	d := serveFakeAdmin(t, f)
	ctx := context.Background()
	dir := t.TempDir()
	big := bytes.Repeat([]byte("x"), 2<<20+5)
	for name, b := range map[string][]byte{"big.tar": big, "empty.tar": nil} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	read := 0
	rows, err := d.importArchives(ctx, []string{filepath.Join(dir, "big.tar"), filepath.Join(dir, "empty.tar")}, "example.com/app", func(n int) { read += n })
	if err != nil {
		t.Fatal(err)
	}
	if want := []imageRow{{ID: "sha256:1", Names: []string{"example.com/app:1"}}, {ID: "sha256:1", Names: []string{"example.com/app:1"}}}; !cmp.Equal(rows, want) {
		t.Errorf("import rows: %s", cmp.Diff(want, rows))
	}
	if read != len(big) {
		t.Errorf("onRead reported %d bytes, want %d", read, len(big))
	}
	// Each Import's messages as (bytes, base name), and the bytes it got.
	type msg struct {
		Len  int
		Base string
	}
	var got [][]msg
	for i, msgs := range f.imports {
		var data []byte
		got = append(got, nil)
		for _, m := range msgs {
			got[i] = append(got[i], msg{len(m.GetData()), m.GetBaseName()})
			data = append(data, m.GetData()...)
		}
		if i == 0 && !bytes.Equal(data, big) {
			t.Error("the daemon did not receive the archive as it is")
		}
	}
	want := [][]msg{{{1 << 20, "example.com/app"}, {1 << 20, ""}, {5, ""}}, {{0, "example.com/app"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("import messages (-want +got):\n%s", diff)
	}

	var out bytes.Buffer
	if err := d.export(ctx, []string{"a", "b"}, &out); err != nil || out.String() != string(f.export) {
		t.Errorf("export: %q, %v", out.String(), err)
	}
	if err := d.export(ctx, []string{"a"}, io.Discard); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "(daemon request ") {
		t.Errorf("failed export: %v", err)
	}

	var progress []int64
	id, err := d.pullStream(ctx, "example.com/app:1", nil, func(n int64) { progress = append(progress, n) })
	if err != nil || id != "sha256:2" || !cmp.Equal(progress, []int64{10, 20, 30}) {
		t.Errorf("pull: %q, progress %v, %v", id, progress, err)
	}
	if diff := cmp.Diff([]*adminapi.PullRequest{{Image: "example.com/app:1"}}, f.pulls, protocmp.Transform()); diff != "" {
		t.Errorf("pull request (-want +got):\n%s", diff)
	}

	f.mu.Lock()
	f.fail = fmt.Errorf("bad archive: %w", errdefs.ErrInvalidArgument)
	f.mu.Unlock()
	if _, err := d.importArchives(ctx, []string{filepath.Join(dir, "big.tar")}, "", func(int) {}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "(daemon request ") {
		t.Errorf("failed import: %v", err)
	}
}
