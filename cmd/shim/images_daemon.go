//go:build !guest

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/cradle-runtime/cradle/pkg/cri"
	"github.com/cradle-runtime/cradle/pkg/cri/adminapi"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// daemonBackend acts through a running daemon: the CRI ImageService for
// list and remove, cradle's admin service for import and export.
type daemonBackend struct {
	conn   *grpc.ClientConn
	images runtime.ImageServiceClient
	admin  adminapi.ImagesClient
}

func dialDaemon(socket string) (*daemonBackend, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(tagUnary), grpc.WithChainStreamInterceptor(tagStream))
	if err != nil {
		return nil, err
	}
	return &daemonBackend{conn: conn, images: runtime.NewImageServiceClient(conn), admin: adminapi.NewImagesClient(conn)}, nil
}

// requestError is an error of a call the daemon logged under request ID
// id (its trailer cri.RequestIDTrailer), for the operator to find.
type requestError struct {
	err error
	id  string
}

func (e requestError) Error() string { return e.err.Error() + " (daemon request " + e.id + ")" }

func (e requestError) Unwrap() error { return e.err }

func withRequestID(err error, trailer metadata.MD) error {
	if ids := trailer.Get(cri.RequestIDTrailer); err != nil && len(ids) > 0 {
		return requestError{err: err, id: ids[0]}
	}
	return err
}

func tagUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var trailer metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Trailer(&trailer))...)
	return withRequestID(err, trailer)
}

func tagStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return taggedStream{s}, nil
}

// taggedStream names the request in the errors that end a stream.
type taggedStream struct{ grpc.ClientStream }

func (s taggedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return withRequestID(err, s.Trailer())
}

func (d *daemonBackend) close() error { return d.conn.Close() }

func (d *daemonBackend) importArchives(ctx context.Context, paths []string, base string, onRead func(int)) ([]imageRow, error) {
	var rows []imageRow
	for _, p := range paths {
		r, err := d.importOne(ctx, p, base, onRead)
		if err != nil {
			return rows, fmt.Errorf("import %s: %w", p, daemonError(err))
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func (d *daemonBackend) importOne(ctx context.Context, path, base string, onRead func(int)) ([]imageRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stream, err := d.admin.Import(ctx)
	if err != nil {
		return nil, err
	}
	// The first message carries the base name, and is sent even for an
	// empty file.
	buf := make([]byte, 1<<20)
	for first := true; ; {
		n, err := f.Read(buf)
		if n > 0 || first {
			req := &adminapi.ImportRequest{Data: buf[:n]}
			if first {
				req.BaseName, first = base, false
			}
			if serr := stream.Send(req); errors.Is(serr, io.EOF) {
				break // the daemon ended the call: CloseAndRecv says why
			} else if serr != nil {
				return nil, serr
			}
			onRead(n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	answer, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	rows := make([]imageRow, 0, len(answer.GetImages()))
	for _, img := range answer.GetImages() {
		rows = append(rows, imageRow{ID: img.GetId(), Names: img.GetRepoTags()})
	}
	return rows, nil
}

func (d *daemonBackend) export(ctx context.Context, refs []string, w io.Writer) error {
	return daemonError(d.exportStream(ctx, refs, w))
}

func (d *daemonBackend) exportStream(ctx context.Context, refs []string, w io.Writer) error {
	stream, err := d.admin.Export(ctx, &adminapi.ExportRequest{Images: refs})
	if err != nil {
		return err
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(chunk.GetData()); err != nil {
			return err
		}
	}
}

func (d *daemonBackend) list(ctx context.Context) ([]imageRow, error) {
	resp, err := d.images.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		return nil, daemonError(err)
	}
	rows := make([]imageRow, 0, len(resp.Images))
	for _, img := range resp.Images {
		rows = append(rows, criRow(img))
	}
	return rows, nil
}

func criRow(img *runtime.Image) imageRow {
	return imageRow{ID: img.Id, Size: img.Size, Pinned: img.Pinned,
		Names: append(append([]string{}, img.RepoTags...), img.RepoDigests...)}
}

// get asks ImageStatus, which answers no image (not an error) for one that
// is not there.
func (d *daemonBackend) get(ctx context.Context, ref string) (imageRow, error) {
	resp, err := d.images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		return imageRow{}, daemonError(err)
	}
	if resp.GetImage() == nil {
		return imageRow{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	return criRow(resp.GetImage()), nil
}

// remove refuses an image that is not there (RemoveImage would answer
// success, as kubelet needs).
func (d *daemonBackend) remove(ctx context.Context, ref string, force bool) error {
	if force {
		return errors.New("--force removes pinned images only with the daemon stopped (the CRI has no force)")
	}
	if _, err := d.get(ctx, ref); err != nil {
		return err
	}
	_, err := d.images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	return daemonError(err)
}

// pull pulls through the daemon's admin Pull, which reports progress.
func (d *daemonBackend) pull(ctx context.Context, ref string, auth *storage.Auth, progress func(int64)) (imageRow, error) {
	id, err := d.pullStream(ctx, ref, auth, progress)
	if err != nil {
		return imageRow{}, daemonError(err)
	}
	return d.get(ctx, id)
}

func (d *daemonBackend) pullStream(ctx context.Context, ref string, auth *storage.Auth, progress func(int64)) (string, error) {
	req := &adminapi.PullRequest{Image: ref}
	if auth != nil {
		req.Username, req.Password = auth.Username, auth.Password
	}
	stream, err := d.admin.Pull(ctx, req)
	if err != nil {
		return "", err
	}
	for {
		p, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", errors.New("the daemon ended the pull without naming the image")
			}
			return "", err
		}
		progress(p.GetBytes())
		if p.GetImageId() != "" {
			return p.GetImageId(), nil
		}
	}
}

// daemonError turns a gRPC status into an error that reads
// "Code: message (daemon request ID)" and still answers errdefs classes
// (errors.Is).
func daemonError(err error) error {
	suffix := ""
	var rq requestError
	if errors.As(err, &rq) {
		err, suffix = rq.err, " (daemon request "+rq.id+")"
	}
	st, ok := status.FromError(err)
	if err == nil || !ok {
		return err
	}
	return fmt.Errorf("%s: %w%s", st.Code(), errgrpc.ToNative(err), suffix)
}
