package ctrcheckpoint

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// ImageAnnotation marks a checkpoint OCI image and names the container
// checkpointed (what CRI-O, containerd and checkpointctl look for): an image
// whose layers hold a checkpoint archive's files, as `buildah add` of the
// archive makes it.
const ImageAnnotation = "io.kubernetes.cri-o.annotations.checkpoint.name"

// Extract unpacks the archive at archive into dir (which exists) and
// returns its config.dump and spec.dump. Only regular files and
// directories are taken, by names that stay inside dir.
func Extract(ctx context.Context, archive, dir string) (Config, []byte, error) {
	return extract(ctx, "checkpoint archive "+archive, dir, func(fn func(io.Reader) error) error {
		f, err := os.Open(archive)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		return fn(f)
	})
}

// ExtractImage unpacks the layers of a checkpoint image, which readLayers
// hands over as tar streams in order, into dir as Extract does an archive.
func ExtractImage(ctx context.Context, image, dir string, readLayers func(fn func(io.Reader) error) error) (Config, []byte, error) {
	return extract(ctx, "checkpoint image "+image, dir, readLayers)
}

func extract(ctx context.Context, what, dir string, read func(fn func(io.Reader) error) error) (Config, []byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Config{}, nil, err
	}
	defer func() { _ = root.Close() }()
	if err := read(func(r io.Reader) error { return unpack(ctx, tar.NewReader(r), root, false) }); err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", what, err)
	}
	var cfg Config
	data, err := root.ReadFile(ConfigDump)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		return Config{}, nil, fmt.Errorf("%s: %s: %v: %w", what, ConfigDump, err, errdefs.ErrInvalidArgument)
	}
	spec, err := root.ReadFile(SpecDump)
	if err != nil {
		return Config{}, nil, fmt.Errorf("%s: %s: %v: %w", what, SpecDump, err, errdefs.ErrInvalidArgument)
	}
	if _, err := root.Stat(ImagesDir); err != nil {
		return Config{}, nil, fmt.Errorf("%s: no CRIU images: %w", what, errdefs.ErrInvalidArgument)
	}
	return cfg, spec, nil
}

// ApplyRootfsDiff applies the rootfs-diff.tar and deleted.files that
// Extract unpacked into dir to the mounted root filesystem rootfs, through
// an os.Root: nothing in them can reach outside rootfs.
func ApplyRootfsDiff(ctx context.Context, dir, rootfs string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	var deleted []string
	data, err := os.ReadFile(path.Join(dir, DeletedFiles))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, &deleted); err != nil {
			return fmt.Errorf("%s: %v: %w", DeletedFiles, err, errdefs.ErrInvalidArgument)
		}
	}
	for _, p := range deleted {
		name, ok := local(p)
		if !ok {
			return fmt.Errorf("%s: %q leaves the rootfs: %w", DeletedFiles, p, errdefs.ErrInvalidArgument)
		}
		if err := root.RemoveAll(name); err != nil {
			return fmt.Errorf("delete %s: %w", p, err)
		}
	}
	f, err := os.Open(path.Join(dir, RootfsDiff))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := unpack(ctx, tar.NewReader(f), root, true); err != nil {
		return fmt.Errorf("%s: %w", RootfsDiff, err)
	}
	return nil
}

// local makes an archive member's name relative to the root it is
// unpacked into; names that would leave it are refused.
func local(name string) (string, bool) {
	p := path.Clean(strings.TrimPrefix(name, "/"))
	if p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}

// unpack writes tr's members into root. With full, symbolic and hard
// links, owners and times are restored too (a rootfs); without, only
// files and directories (an archive's own members).
func unpack(ctx context.Context, tr *tar.Reader, root *os.Root, full bool) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name, ok := local(hdr.Name)
		if !ok {
			continue // the root itself, or a name leaving it
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		mode := fs.FileMode(hdr.Mode).Perm() | fs.FileMode(hdr.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, mode); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		case tar.TypeReg:
			if err := writeMember(root, name, mode, tr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if !full {
				continue
			}
			_ = root.RemoveAll(name)
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			target, ok := local(hdr.Linkname)
			if !full || !ok {
				continue
			}
			_ = root.RemoveAll(name)
			if err := root.Link(target, name); err != nil {
				return err
			}
		default:
			continue // devices and fifos: a container's writable layer holds none worth keeping
		}
		if !full {
			continue
		}
		if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeSymlink {
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
			if err := root.Chtimes(name, hdr.AccessTime, hdr.ModTime); err != nil {
				return err
			}
		}
	}
}

func writeMember(root *os.Root, name string, mode fs.FileMode, r io.Reader) error {
	f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
