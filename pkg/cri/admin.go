package cri

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cri/adminapi"
	"github.com/cradle-runtime/cradle/pkg/metrics"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The admin service (adminapi.Images, admin.proto) carries what the CRI has
// no call for (importing and exporting image archives, a pull that reports
// progress) on the same socket, so `cradle images` works while the daemon
// holds the store.

// adminChunk is the most Export sends in one message.
const adminChunk = 1 << 20

type adminServer struct {
	adminapi.UnimplementedImagesServer
	images  *storage.Store
	tempDir string
	metrics *metrics.Metrics
}

// RegisterAdmin adds the admin service to g. Archives being imported are
// staged under tempDir; pulls are counted in m (nil: not counted).
func RegisterAdmin(g *grpc.Server, images *storage.Store, tempDir string, m *metrics.Metrics) {
	adminapi.RegisterImagesServer(g, &adminServer{images: images, tempDir: tempDir, metrics: m})
}

// Pull is PullImage with progress: the same store call, counted the same.
func (a *adminServer) Pull(req *adminapi.PullRequest, stream grpc.ServerStreamingServer[adminapi.PullProgress]) error {
	ref, err := imageRef(&runtime.ImageSpec{Image: req.GetImage()})
	if err != nil {
		return err
	}
	var auth *storage.Auth
	if req.GetUsername() != "" || req.GetPassword() != "" {
		auth = &storage.Auth{Username: req.GetUsername(), Password: req.GetPassword()}
	}
	var mu sync.Mutex // progress comes from the store's goroutine
	send := func(p *adminapi.PullProgress) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(p)
	}
	img, stats, err := a.images.PullWithProgress(stream.Context(), ref, auth, func(st storage.PullStats) {
		_ = send(&adminapi.PullProgress{Bytes: st.Bytes}) // a gone client cancels the pull through ctx
	})
	a.metrics.ObservePull(stats.Bytes, stats.Total, err)
	if err != nil {
		return err
	}
	return send(&adminapi.PullProgress{Bytes: stats.Bytes, ImageId: img.ID})
}

// Import stages the streamed archive under the temp dir, then imports it.
func (a *adminServer) Import(stream grpc.ClientStreamingServer[adminapi.ImportRequest, adminapi.ImportResponse]) error {
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
	var base string
	for first := true; ; first = false {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if first {
			base = chunk.GetBaseName()
		}
		if _, err := f.Write(chunk.GetData()); err != nil {
			return fmt.Errorf("stage archive: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	imgs, err := a.images.Import(ctx, []string{f.Name()}, storage.ImportOptions{BaseName: base})
	if err != nil {
		return err
	}
	resp := &adminapi.ImportResponse{Images: make([]*adminapi.ImportedImage, 0, len(imgs))}
	for _, img := range imgs {
		resp.Images = append(resp.Images, &adminapi.ImportedImage{Id: img.ID, RepoTags: img.RepoTags})
	}
	return stream.SendAndClose(resp)
}

// Export streams the archive of the images named in chunks of adminChunk.
func (a *adminServer) Export(req *adminapi.ExportRequest, stream grpc.ServerStreamingServer[adminapi.ExportChunk]) error {
	refs := req.GetImages()
	if len(refs) == 0 {
		return fmt.Errorf("export names no image: %w", errdefs.ErrInvalidArgument)
	}
	// Resolve first, so an unknown image is an error before any byte is sent.
	for _, r := range refs {
		if _, err := a.images.Get(stream.Context(), r); err != nil {
			return err
		}
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&adminapi.ExportChunk{Data: b}) }}
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
