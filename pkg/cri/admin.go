package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/metrics"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The admin service carries what the CRI has no call for (importing and
// exporting image archives, a pull that reports progress) on the same
// socket, so `cradle images` works while the daemon holds the store. Its messages are protobuf well-known
// types: no generated code.
const (
	adminService = "cradle.admin.v1.Images"
	// AdminImportMethod streams an archive in (BytesValue chunks; the first
	// message's value may be empty) and answers JSON of the imported images.
	AdminImportMethod = "/" + adminService + "/Import"
	// AdminExportMethod takes newline-separated image references and
	// streams the archive out in BytesValue chunks.
	AdminExportMethod = "/" + adminService + "/Export"
	// AdminPullMethod takes one StringValue, JSON of an AdminPullRequest,
	// and streams StringValues, JSON of AdminPullProgress: progress while
	// the pull runs, then the pulled image.
	AdminPullMethod = "/" + adminService + "/Pull"
	// AdminBaseNameKey is the gRPC metadata key carrying Import's base name.
	AdminBaseNameKey = "cradle-base-name"
)

const adminChunk = 1 << 20

// ImportedImage is one line of Import's answer.
type ImportedImage struct {
	ID       string   `json:"id"`
	RepoTags []string `json:"repoTags"`
}

// AdminPullRequest is what Pull is asked.
type AdminPullRequest struct {
	Image    string `json:"image"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// AdminPullProgress is one answer of Pull: bytes received so far, and, in
// the last answer, the pulled image's ID.
type AdminPullProgress struct {
	Bytes   int64  `json:"bytes"`
	ImageID string `json:"imageId,omitempty"`
}

type adminServer struct {
	images  *storage.Store
	tempDir string
	metrics *metrics.Metrics
}

// RegisterAdmin adds the admin service to g. Archives being imported are
// staged under tempDir; pulls are counted in m (nil: not counted).
func RegisterAdmin(g *grpc.Server, images *storage.Store, tempDir string, m *metrics.Metrics) {
	g.RegisterService(&grpc.ServiceDesc{
		ServiceName: adminService,
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "Import", Handler: adminImportHandler, ClientStreams: true},
			{StreamName: "Export", Handler: adminExportHandler, ServerStreams: true},
			{StreamName: "Pull", Handler: adminPullHandler, ServerStreams: true},
		},
		Metadata: "cradle/admin",
	}, &adminServer{images: images, tempDir: tempDir, metrics: m})
}

func adminImportHandler(srv any, stream grpc.ServerStream) error {
	return srv.(*adminServer).importArchive(stream)
}

func adminExportHandler(srv any, stream grpc.ServerStream) error {
	return srv.(*adminServer).exportArchive(stream)
}

func adminPullHandler(srv any, stream grpc.ServerStream) error {
	return srv.(*adminServer).pull(stream)
}

// pull is PullImage with progress: the same store call, counted the same.
func (a *adminServer) pull(stream grpc.ServerStream) error {
	var msg wrapperspb.StringValue
	if err := stream.RecvMsg(&msg); err != nil {
		return err
	}
	var req AdminPullRequest
	if err := json.Unmarshal([]byte(msg.GetValue()), &req); err != nil {
		return fmt.Errorf("pull request: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	ref, err := imageRef(&runtime.ImageSpec{Image: req.Image})
	if err != nil {
		return err
	}
	var auth *storage.Auth
	if req.Username != "" || req.Password != "" {
		auth = &storage.Auth{Username: req.Username, Password: req.Password}
	}
	var mu sync.Mutex // progress comes from the store's goroutine
	send := func(p AdminPullProgress) error {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		return stream.SendMsg(wrapperspb.String(string(b)))
	}
	img, stats, err := a.images.PullWithProgress(stream.Context(), ref, auth, func(st storage.PullStats) {
		_ = send(AdminPullProgress{Bytes: st.Bytes}) // a gone client cancels the pull through ctx
	})
	a.metrics.ObservePull(stats.Bytes, stats.Total, err)
	if err != nil {
		return err
	}
	return send(AdminPullProgress{Bytes: stats.Bytes, ImageID: img.ID})
}

func (a *adminServer) importArchive(stream grpc.ServerStream) error {
	ctx := stream.Context()
	if err := os.MkdirAll(a.tempDir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(a.tempDir, "import-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	for {
		var chunk wrapperspb.BytesValue
		err := stream.RecvMsg(&chunk)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if _, err := f.Write(chunk.GetValue()); err != nil {
			return fmt.Errorf("stage archive: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	imgs, err := a.images.Import(ctx, []string{f.Name()}, storage.ImportOptions{BaseName: baseName(ctx)})
	if err != nil {
		return err
	}
	out := make([]ImportedImage, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, ImportedImage{ID: img.ID, RepoTags: img.RepoTags})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return stream.SendMsg(wrapperspb.String(string(b)))
}

func (a *adminServer) exportArchive(stream grpc.ServerStream) error {
	var req wrapperspb.StringValue
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	refs := strings.Fields(req.GetValue())
	if len(refs) == 0 {
		return fmt.Errorf("export names no image: %w", errdefs.ErrInvalidArgument)
	}
	// Resolve first, so an unknown image is an error before any byte is sent.
	for _, r := range refs {
		if _, err := a.images.Get(stream.Context(), r); err != nil {
			return err
		}
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.SendMsg(wrapperspb.Bytes(b)) }}
	if err := a.images.Export(stream.Context(), w, refs); err != nil {
		return err
	}
	return w.flush()
}

// chunkWriter batches writes into messages of up to adminChunk bytes.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		take := min(adminChunk-len(c.buf), len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		if len(c.buf) == adminChunk {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = make([]byte, 0, adminChunk)
	return err
}

func baseName(ctx context.Context) string { return metadataValue(ctx, AdminBaseNameKey) }

func metadataValue(ctx context.Context, key string) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
