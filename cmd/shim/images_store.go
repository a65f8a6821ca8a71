//go:build !guest

package main

import (
	"context"
	"io"

	"github.com/cradle-runtime/cradle/pkg/storage"
)

// storeBackend acts on the store directly (daemon stopped).
type storeBackend struct{ s *storage.Store }

func (b storeBackend) importArchives(ctx context.Context, paths []string, base string, onRead func(int)) ([]imageRow, error) {
	imgs, err := b.s.Import(ctx, paths, storage.ImportOptions{BaseName: base, OnRead: onRead})
	if err != nil {
		return nil, err
	}
	return rowsOf(imgs), nil
}

func (b storeBackend) export(ctx context.Context, refs []string, w io.Writer) error {
	return b.s.Export(ctx, w, refs)
}

func (b storeBackend) list(ctx context.Context) ([]imageRow, error) {
	return rowsOf(b.s.List(ctx)), nil
}

func (b storeBackend) get(ctx context.Context, ref string) (imageRow, error) {
	img, err := b.s.Get(ctx, ref)
	if err != nil {
		return imageRow{}, err
	}
	return rowsOf([]storage.Image{img})[0], nil
}

// remove refuses an image that is not there: the store's Remove is
// idempotent, as RemoveImage must be, but an operator asking to remove a
// misspelt name must hear of it. This process holds the store's lock, so
// nothing removes the image between the two calls.
func (b storeBackend) remove(ctx context.Context, ref string, force bool) error {
	if _, err := b.s.Get(ctx, ref); err != nil {
		return err
	}
	return b.s.Remove(ctx, ref, force)
}

func (b storeBackend) pull(ctx context.Context, ref string, auth *storage.Auth, progress func(int64)) (imageRow, error) {
	img, _, err := b.s.PullWithProgress(ctx, ref, auth, func(st storage.PullStats) { progress(st.Bytes) })
	if err != nil {
		return imageRow{}, err
	}
	return rowsOf([]storage.Image{img})[0], nil
}

func (b storeBackend) close() error { return b.s.Close() }

func rowsOf(imgs []storage.Image) []imageRow {
	rows := make([]imageRow, 0, len(imgs))
	for _, img := range imgs {
		rows = append(rows, imageRow{ID: img.ID, Size: uint64(img.Size), Pinned: img.Pinned,
			Names: append(append([]string{}, img.RepoTags...), img.RepoDigests...)})
	}
	return rows
}
