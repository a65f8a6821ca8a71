//go:build !guest

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/storage"
)

const imagesUsage = `Usage:
  cradle images import [--config FILE] [--base-name NAME] ARCHIVE...
  cradle images export [--config FILE] -o FILE IMAGE...
  cradle images ls [--config FILE] [-q]
  cradle images rm [--config FILE] [--force] IMAGE...
  cradle images pull [--config FILE] [--creds USER:PASSWORD] IMAGE

With the daemon stopped these work on the image store directly (taking its
lock); with it running they go through its socket. Archives are OCI image
layouts (skopeo copy … oci-archive:) or docker-archive tarballs (docker
save); an import verifies every digest and is all-or-nothing. Import, export
and pull report progress on standard error while they run. Every subcommand
also takes --log-level (default warn). Exit status: 0 done, 1 failed,
2 usage error.
`

// imageRow is one image as the image commands print it.
type imageRow struct {
	ID     string
	Size   uint64
	Pinned bool
	Names  []string
}

// imageBackend is where the image commands act: the store itself, or the
// running daemon. get and remove fail with errdefs.ErrNotFound for an image
// that is not there.
type imageBackend interface {
	importArchives(ctx context.Context, paths []string, base string, onRead func(int)) ([]imageRow, error)
	export(ctx context.Context, refs []string, w io.Writer) error
	list(ctx context.Context) ([]imageRow, error)
	get(ctx context.Context, ref string) (imageRow, error)
	remove(ctx context.Context, ref string, force bool) error
	pull(ctx context.Context, ref string, auth *storage.Auth, progress func(bytes int64)) (imageRow, error)
	close() error
}

// imagesIO is where the image commands write: results on out, progress on
// errOut.
type imagesIO struct {
	out, errOut io.Writer
}

// imageSubcommand is one `cradle images` subcommand: its flags, its check
// of the command line (done before anything is opened), and its action.
type imageSubcommand struct {
	usage string
	flags func(fs *flag.FlagSet) func(args []string) (imageAction, error)
}

// imageAction runs a parsed subcommand against a backend.
type imageAction func(ctx context.Context, b imageBackend, io imagesIO) error

// imageSubcommands are the subcommands by name.
func imageSubcommands() map[string]imageSubcommand {
	return map[string]imageSubcommand{
		"import": {"import [--base-name NAME] ARCHIVE...", importFlags},
		"export": {"export -o FILE IMAGE...", exportFlags},
		"ls":     {"ls [-q]", listFlags},
		"rm":     {"rm [--force] IMAGE...", removeFlags},
		"pull":   {"pull [--creds USER:PASSWORD] IMAGE", pullFlags},
	}
}

// imagesCmd runs `cradle images …`. The command line is checked in full
// before the configuration is read or the store opened.
func imagesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, imagesUsage)
		return usageErrorf("images: no subcommand")
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, imagesUsage)
		return nil
	}
	sub, ok := imageSubcommands()[args[0]]
	if !ok {
		fmt.Fprint(stderr, imagesUsage)
		return usageErrorf("images: unknown subcommand %q", args[0])
	}
	fs := flag.NewFlagSet("images "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cradle images %s\n\nFlags:\n", sub.usage)
		fs.PrintDefaults()
	}
	load := configFlag(fs)
	level := fs.String("log-level", "warn", "log level of this command: debug, info, warn or error")
	check := sub.flags(fs)
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("images %s: %v", args[0], err)
	}
	action, err := check(pos)
	if err != nil {
		fs.Usage()
		return usageErrorf("images %s: %v", args[0], err)
	}
	if err := config.CheckLogLevel(*level); err != nil {
		return usageErrorf("images %s: --log-level: %v", args[0], err)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	cfg.Log.Level = *level
	b, err := openImageBackend(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = b.close() }()
	return action(ctx, b, imagesIO{out: stdout, errOut: stderr})
}

// parseInterspersed parses flags wherever they are among the arguments
// (`rm IMAGE --force` as `rm --force IMAGE`); after "--" everything is an
// argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, rest = args[:i], args[i+1:] //nolint:gosec // G602: i is an index of args
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
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

func importFlags(fs *flag.FlagSet) func([]string) (imageAction, error) {
	base := fs.String("base-name", "", "name for images an archive gives only a tag (NAME:TAG)")
	return func(paths []string) (imageAction, error) {
		if len(paths) == 0 {
			return nil, errors.New("name at least one archive")
		}
		return func(ctx context.Context, b imageBackend, o imagesIO) error {
			return importCmd(ctx, b, paths, *base, o)
		}, nil
	}
}

func exportFlags(fs *flag.FlagSet) func([]string) (imageAction, error) {
	output := fs.String("o", "", "archive to write (required)")
	return func(refs []string) (imageAction, error) {
		if *output == "" || len(refs) == 0 {
			return nil, errors.New("give -o FILE and at least one image")
		}
		return func(ctx context.Context, b imageBackend, o imagesIO) error {
			return exportCmd(ctx, b, refs, *output, o)
		}, nil
	}
}

func listFlags(fs *flag.FlagSet) func([]string) (imageAction, error) {
	quiet := fs.Bool("q", false, "print only image IDs")
	return func(args []string) (imageAction, error) {
		if len(args) != 0 {
			return nil, fmt.Errorf("takes no arguments (got %q)", args)
		}
		return func(ctx context.Context, b imageBackend, o imagesIO) error {
			return listCmd(ctx, b, *quiet, o.out)
		}, nil
	}
}

func removeFlags(fs *flag.FlagSet) func([]string) (imageAction, error) {
	force := fs.Bool("force", false, "remove pinned images too (daemon stopped)")
	return func(refs []string) (imageAction, error) {
		if len(refs) == 0 {
			return nil, errors.New("name at least one image")
		}
		return func(ctx context.Context, b imageBackend, o imagesIO) error {
			return removeCmd(ctx, b, refs, *force, o.out)
		}, nil
	}
}

func pullFlags(fs *flag.FlagSet) func([]string) (imageAction, error) {
	creds := fs.String("creds", "", "registry credentials USER:PASSWORD (else those of the registry configuration, or none)")
	return func(refs []string) (imageAction, error) {
		if len(refs) != 1 {
			return nil, fmt.Errorf("name exactly one image (got %d)", len(refs))
		}
		auth, err := parseCreds(*creds)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, b imageBackend, o imagesIO) error {
			return pullCmd(ctx, b, refs[0], auth, o)
		}, nil
	}
}

// parseCreds reads --creds USER:PASSWORD ("" is no credentials).
func parseCreds(s string) (*storage.Auth, error) {
	if s == "" {
		return nil, nil
	}
	user, pass, ok := strings.Cut(s, ":")
	if !ok || user == "" || pass == "" {
		return nil, errors.New("--creds takes USER:PASSWORD")
	}
	return &storage.Auth{Username: user, Password: pass}, nil
}

func importCmd(ctx context.Context, b imageBackend, paths []string, base string, o imagesIO) error {
	var total int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("import %s: not a regular file", p)
		}
		total += fi.Size()
	}
	pr := startProgress(o.errOut, "import", total, "read; unpacking")
	rows, err := b.importArchives(ctx, paths, base, func(n int) { pr.add(int64(n)) })
	pr.stop(err == nil)
	if err != nil {
		return err
	}
	for _, r := range rows {
		fmt.Fprintf(o.out, "imported %s %s\n", r.ID, strings.Join(r.Names, " "))
	}
	return nil
}

// exportCmd checks every image exists, then writes the archive beside its
// final name and renames it into place, so a failed export never leaves a
// truncated archive.
func exportCmd(ctx context.Context, b imageBackend, refs []string, output string, o imagesIO) (retErr error) {
	var total int64
	for _, r := range refs {
		row, err := b.get(ctx, r)
		if err != nil {
			return fmt.Errorf("export %s: %w", r, err)
		}
		total += int64(row.Size)
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
	pr := startProgress(o.errOut, "export", total, "")
	err = b.export(ctx, refs, countingWriter{w: f, p: pr})
	pr.stop(err == nil)
	if err != nil {
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

func pullCmd(ctx context.Context, b imageBackend, ref string, auth *storage.Auth, o imagesIO) error {
	pr := startProgress(o.errOut, "pull "+ref, 0, "")
	row, err := b.pull(ctx, ref, auth, pr.set)
	pr.stop(err == nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "pulled %s %s\n", row.ID, strings.Join(row.Names, " "))
	return nil
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
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\n", shortID(r.ID), humanSize(int64(r.Size)), r.Pinned, strings.Join(r.Names, ","))
	}
	return tw.Flush()
}

// removeCmd removes each image in turn; one that is not there, or cannot
// go, is an error, and the others are still removed.
func removeCmd(ctx context.Context, b imageBackend, refs []string, force bool, stdout io.Writer) error {
	var errs []error
	for _, r := range refs {
		err := b.remove(ctx, r, force)
		switch {
		case errdefs.IsNotFound(err):
			errs = append(errs, fmt.Errorf("rm %s: no such image", r))
		case err != nil:
			errs = append(errs, fmt.Errorf("rm %s: %w", r, err))
		default:
			fmt.Fprintf(stdout, "removed %s\n", r)
		}
	}
	return errors.Join(errs...)
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
