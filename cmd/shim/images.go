package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/storage"
)

const imagesUsage = `Usage:
  cradle images import [--config FILE] [--base-name NAME] ARCHIVE...
  cradle images export [--config FILE] -o FILE IMAGE...
  cradle images ls [--config FILE] [-q]
  cradle images rm [--config FILE] [--force] IMAGE...

With the daemon stopped these work on the image store directly (taking its
lock); with it running they go through its socket. Archives are OCI image
layouts (skopeo copy … oci-archive:) or docker-archive tarballs (docker
save); an import verifies every digest and is all-or-nothing.
`

// imageRow is one image as the image commands print it.
type imageRow struct {
	ID     string
	Size   uint64
	Pinned bool
	Names  []string
}

// imageBackend is where the image commands act: the store itself, or the
// running daemon.
type imageBackend interface {
	importArchives(ctx context.Context, paths []string, base string) ([]imageRow, error)
	export(ctx context.Context, refs []string, w io.Writer) error
	list(ctx context.Context) ([]imageRow, error)
	remove(ctx context.Context, ref string, force bool) error
	close() error
}

// imagesCmd runs `cradle images …`.
func imagesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, imagesUsage)
		return errors.New("images: no subcommand")
	}
	fs := flag.NewFlagSet("images "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlag(fs)
	baseName := fs.String("base-name", "", "import: name for images an archive gives only a tag")
	output := fs.String("o", "", "export: archive to write")
	quiet := fs.Bool("q", false, "ls: only image IDs")
	force := fs.Bool("force", false, "rm: remove pinned images too (daemon stopped)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	b, err := openImageBackend(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = b.close() }()
	switch args[0] {
	case "import":
		return importCmd(ctx, b, fs.Args(), *baseName, stdout)
	case "export":
		return exportCmd(ctx, b, fs.Args(), *output)
	case "ls":
		return listCmd(ctx, b, *quiet, stdout)
	case "rm":
		return removeCmd(ctx, b, fs.Args(), *force, stdout)
	}
	fmt.Fprint(stderr, imagesUsage)
	return fmt.Errorf("images: unknown subcommand %q", args[0])
}

// openImageBackend takes the store's lock, or, when a daemon holds it,
// talks to that daemon.
func openImageBackend(ctx context.Context, cfg config.Config, stderr io.Writer) (imageBackend, error) {
	log := newLogger(cfg.Log, stderr)
	bridgeContainerdLogs(log, cfg.Log.Level)
	store, err := openImages(ctx, cfg, log)
	if errors.Is(err, storage.ErrLocked) {
		d, derr := dialDaemon(cfg.GRPC.Socket)
		if derr != nil {
			return nil, fmt.Errorf("%w; and its socket: %w", err, derr)
		}
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	return storeBackend{store}, nil
}

func importCmd(ctx context.Context, b imageBackend, paths []string, base string, stdout io.Writer) error {
	if len(paths) == 0 {
		return errors.New("images import: name at least one archive")
	}
	rows, err := b.importArchives(ctx, paths, base)
	if err != nil {
		return err
	}
	for _, r := range rows {
		fmt.Fprintf(stdout, "imported %s %s\n", r.ID, strings.Join(r.Names, " "))
	}
	return nil
}

// exportCmd writes the archive beside its final name and renames it into
// place, so a failed export never leaves a truncated archive.
func exportCmd(ctx context.Context, b imageBackend, refs []string, output string) (retErr error) {
	if output == "" || len(refs) == 0 {
		return errors.New("images export: give -o FILE and at least one image")
	}
	tmp := output + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := b.export(ctx, refs, f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, output)
}

func listCmd(ctx context.Context, b imageBackend, quiet bool, stdout io.Writer) error {
	rows, err := b.list(ctx)
	if err != nil {
		return err
	}
	if quiet {
		for _, r := range rows {
			fmt.Fprintln(stdout, r.ID)
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE ID\tSIZE\tPINNED\tNAMES")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%t\t%s\n", shortID(r.ID), r.Size, r.Pinned, strings.Join(r.Names, ","))
	}
	return tw.Flush()
}

func removeCmd(ctx context.Context, b imageBackend, refs []string, force bool, stdout io.Writer) error {
	if len(refs) == 0 {
		return errors.New("images rm: name at least one image")
	}
	for _, r := range refs {
		if err := b.remove(ctx, r, force); err != nil {
			return fmt.Errorf("remove %s: %w", r, err)
		}
		fmt.Fprintf(stdout, "removed %s\n", r)
	}
	return nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// storeBackend acts on the store directly (daemon stopped).
type storeBackend struct{ s *storage.Store }

func (b storeBackend) importArchives(ctx context.Context, paths []string, base string) ([]imageRow, error) {
	imgs, err := b.s.Import(ctx, paths, storage.ImportOptions{BaseName: base})
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

func (b storeBackend) remove(ctx context.Context, ref string, force bool) error {
	return b.s.Remove(ctx, ref, force)
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
