package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cradle-runtime/cradle/pkg/cri"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
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
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &daemonBackend{conn: conn, images: runtime.NewImageServiceClient(conn)}, nil
}

func (d *daemonBackend) close() error { return d.conn.Close() }

func (d *daemonBackend) importArchives(ctx context.Context, paths []string, base string) ([]imageRow, error) {
	var rows []imageRow
	for _, p := range paths {
		r, err := d.importOne(ctx, p, base)
		if err != nil {
			return rows, fmt.Errorf("import %s: %w", p, err)
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func (d *daemonBackend) importOne(ctx context.Context, path, base string) ([]imageRow, error) {
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
			if serr := stream.SendMsg(wrapperspb.Bytes(buf[:n])); serr != nil {
				return nil, serr
			}
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
		return nil, err
	}
	rows := make([]imageRow, 0, len(resp.Images))
	for _, img := range resp.Images {
		rows = append(rows, imageRow{ID: img.Id, Size: img.Size, Pinned: img.Pinned,
			Names: append(append([]string{}, img.RepoTags...), img.RepoDigests...)})
	}
	return rows, nil
}

func (d *daemonBackend) remove(ctx context.Context, ref string, force bool) error {
	if force {
		return errors.New("--force removes pinned images only with the daemon stopped (the CRI has no force)")
	}
	_, err := d.images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	return err
}
