//go:build !guest

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/cradle-runtime/cradle/pkg/cri"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// daemonBackend acts through a running daemon: the CRI ImageService for
// list and remove, cradle's admin service for import and export.
type daemonBackend struct {
	conn   *grpc.ClientConn
	images runtime.ImageServiceClient
}

func dialDaemon(socket string) (*daemonBackend, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(tagUnary), grpc.WithChainStreamInterceptor(tagStream))
	if err != nil {
		return nil, err
	}
	return &daemonBackend{conn: conn, images: runtime.NewImageServiceClient(conn)}, nil
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
	ctx = metadata.AppendToOutgoingContext(ctx, cri.AdminBaseNameKey, base)
	stream, err := d.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, cri.AdminImportMethod)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := stream.SendMsg(wrapperspb.Bytes(buf[:n])); errors.Is(serr, io.EOF) {
				break // the daemon ended the call: RecvMsg says why
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
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var answer wrapperspb.StringValue
	if err := stream.RecvMsg(&answer); err != nil {
		return nil, err
	}
	var imgs []cri.ImportedImage
	if err := json.Unmarshal([]byte(answer.GetValue()), &imgs); err != nil {
		return nil, fmt.Errorf("daemon's answer: %w", err)
	}
	rows := make([]imageRow, 0, len(imgs))
	for _, img := range imgs {
		rows = append(rows, imageRow{ID: img.ID, Names: img.RepoTags})
	}
	return rows, nil
}

func (d *daemonBackend) export(ctx context.Context, refs []string, w io.Writer) error {
	return daemonError(d.exportStream(ctx, refs, w))
}

func (d *daemonBackend) exportStream(ctx context.Context, refs []string, w io.Writer) error {
	stream, err := d.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, cri.AdminExportMethod)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(wrapperspb.String(strings.Join(refs, "\n"))); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	for {
		var chunk wrapperspb.BytesValue
		err := stream.RecvMsg(&chunk)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(chunk.GetValue()); err != nil {
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
	req := cri.AdminPullRequest{Image: ref}
	if auth != nil {
		req.Username, req.Password = auth.Username, auth.Password
	}
	b, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	stream, err := d.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, cri.AdminPullMethod)
	if err != nil {
		return "", err
	}
	if err := stream.SendMsg(wrapperspb.String(string(b))); err != nil {
		return "", err
	}
	if err := stream.CloseSend(); err != nil {
		return "", err
	}
	for {
		var msg wrapperspb.StringValue
		if err := stream.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return "", errors.New("the daemon ended the pull without naming the image")
			}
			return "", err
		}
		var p cri.AdminPullProgress
		if err := json.Unmarshal([]byte(msg.GetValue()), &p); err != nil {
			return "", fmt.Errorf("daemon's answer: %w", err)
		}
		progress(p.Bytes)
		if p.ImageID != "" {
			return p.ImageID, nil
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
