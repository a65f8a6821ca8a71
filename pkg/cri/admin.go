package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The admin service carries what the CRI has no call for (importing and
// exporting image archives) on the same socket, so `cradle images` works
// while the daemon holds the store. Its messages are protobuf well-known
// types: no generated code.
const (
	adminService = "cradle.admin.v1.Images"
	// AdminImportMethod streams an archive in (BytesValue chunks; the first
	// message's value may be empty) and answers JSON of the imported images.
	AdminImportMethod = "/" + adminService + "/Import"
	// AdminExportMethod takes newline-separated image references and
	// streams the archive out in BytesValue chunks.
	AdminExportMethod = "/" + adminService + "/Export"
	// AdminBaseNameKey is the gRPC metadata key carrying Import's base name.
	AdminBaseNameKey = "cradle-base-name"
)

const adminChunk = 1 << 20

// ImportedImage is one line of Import's answer.
type ImportedImage struct {
	ID       string   `json:"id"`
	RepoTags []string `json:"repoTags"`
}

type adminServer struct {
	images  *storage.Store
	tempDir string
}

// RegisterAdmin adds the admin service to g. Archives being imported are
// staged under tempDir.
func RegisterAdmin(g *grpc.Server, images *storage.Store, tempDir string) {
	g.RegisterService(&grpc.ServiceDesc{
		ServiceName: adminService,
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "Import", Handler: adminImportHandler, ClientStreams: true},
			{StreamName: "Export", Handler: adminExportHandler, ServerStreams: true},
		},
		Metadata: "cradle/admin",
	}, &adminServer{images: images, tempDir: tempDir})
}

func adminImportHandler(srv any, stream grpc.ServerStream) error {
	return srv.(*adminServer).importArchive(stream)
}

func adminExportHandler(srv any, stream grpc.ServerStream) error {
	return srv.(*adminServer).exportArchive(stream)
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
