// Package ctrcheckpoint writes and reads container checkpoint archives in
// the format kubelet's checkpoint API documents and CRI-O and containerd
// write (checkpointctl reads it):
//
//	checkpoint/        CRIU's images (`runc checkpoint --image-path`)
//	config.dump        JSON: the container's ID, name, image and times (Config)
//	spec.dump          JSON: the container's OCI spec (its config.json)
//	rootfs-diff.tar    the writable layer's changes, whiteouts left out
//	deleted.files      JSON: the image's files the container deleted
//	stats-dump         CRIU's dump statistics (a copy of checkpoint/stats-dump)
//
// The archive is an uncompressed tar. Write never leaves a partial archive
// at its location: it writes an unnamed file (O_TMPFILE) in its directory,
// which a crash takes away, and links and renames it into place.
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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// The names of the archive's members.
const (
	ImagesDir    = "checkpoint"
	ConfigDump   = "config.dump"
	SpecDump     = "spec.dump"
	RootfsDiff   = "rootfs-diff.tar"
	DeletedFiles = "deleted.files"
	StatsDump    = "stats-dump"
)

// Config is config.dump: what checkpointctl and CRI-O read of the
// container that was checkpointed.
type Config struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	RootfsImage      string    `json:"rootfsImage,omitempty"`     // the image reference the container was created from
	RootfsImageRef   string    `json:"rootfsImageRef,omitempty"`  // the image's ID
	RootfsImageName  string    `json:"rootfsImageName,omitempty"` // the image's name
	Runtime          string    `json:"runtime,omitempty"`         // the runtime handler
	CreatedTime      time.Time `json:"createdTime"`
	CheckpointedTime time.Time `json:"checkpointedTime"`
}

// Source is what Write puts in an archive.
type Source struct {
	Config      Config
	Spec        []byte // the OCI spec, JSON
	Images      string // directory of CRIU's images
	RootfsUpper string // the rootfs's writable overlay layer; "": no changes
	// Written, if set, is called once the archive is written and synced,
	// before it is put at its location (the crash tests' failpoint).
	Written func()
}

// Write writes the archive of src at location (absolute) through a
// temporary file beside it; workDir holds the intermediate
// rootfs-diff.tar (and may hold CRIU's stats-dump). On error nothing is left at location or beside it.
func Write(ctx context.Context, location string, src Source, workDir string) (retErr error) {
	if !filepath.IsAbs(location) {
		return fmt.Errorf("checkpoint location %q is not an absolute path: %w", location, errdefs.ErrInvalidArgument)
	}
	cfg, err := json.Marshal(src.Config)
	if err != nil {
		return err
	}
	diff := filepath.Join(workDir, RootfsDiff)
	deleted, err := writeRootfsDiff(ctx, diff, src.RootfsUpper)
	if err != nil {
		return fmt.Errorf("rootfs diff: %w", err)
	}
	deletedJSON, err := json.Marshal(deleted)
	if err != nil {
		return err
	}
	f, err := openTemp(location)
	if err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = f.Close()
			_ = os.Remove(f.Name()) // a named temp file; an unnamed one is gone with its descriptor
		}
	}()
	tw := tar.NewWriter(f)
	if err := addTree(ctx, tw, src.Images, ImagesDir); err != nil {
		return fmt.Errorf("CRIU images: %w", err)
	}
	for _, m := range []struct {
		name string
		data []byte
	}{{ConfigDump, cfg}, {SpecDump, src.Spec}, {DeletedFiles, deletedJSON}} {
		if err := addBytes(tw, m.name, m.data); err != nil {
			return err
		}
	}
	if err := addFile(tw, diff, RootfsDiff); err != nil {
		return err
	}
	// CRIU writes its statistics beside its images, or in its work
	// directory when it has one.
	for _, dir := range []string{src.Images, workDir} {
		err := addFile(tw, filepath.Join(dir, StatsDump), StatsDump)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if src.Written != nil {
		src.Written()
	}
	if err := publish(f, location); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	return nil
}

// openTemp opens the file the archive for location is written to: an
// unnamed file in location's directory (O_TMPFILE), which a crash makes
// vanish, else (a filesystem without O_TMPFILE) a hidden temporary file
// beside location.
func openTemp(location string) (*os.File, error) {
	dir := filepath.Dir(location)
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), unnamed), nil
	}
	return os.CreateTemp(dir, "."+filepath.Base(location)+".tmp-")
}

// unnamed is the name os.File holds for an O_TMPFILE file.
const unnamed = ""

// publish closes f and puts it at location, replacing what is there. An
// unnamed file is linked under a hidden name and renamed (linkat cannot
// replace a file); only a crash between the two leaves that name.
func publish(f *os.File, location string) (retErr error) {
	tmp := f.Name()
	if tmp == unnamed {
		tmp = filepath.Join(filepath.Dir(location), fmt.Sprintf(".%s.tmp-%d-%d", filepath.Base(location), os.Getpid(), time.Now().UnixNano()))
		err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		if err != nil {
			return fmt.Errorf("link %s: %w", tmp, err)
		}
		defer func() {
			if retErr != nil {
				_ = os.Remove(tmp)
			}
		}()
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, location); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(location))
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}

func addBytes(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func addFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	hdr.Name = name
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// addTree adds the tree at dir under prefix, as it is.
func addTree(ctx context.Context, tw *tar.Writer, dir, prefix string) error {
	_, err := walkTree(ctx, tw, dir, prefix, false)
	return err
}

// writeRootfsDiff writes the tar of the overlay layer upper at path and
// returns the paths its whiteouts delete (left out of the tar).
func writeRootfsDiff(ctx context.Context, path, upper string) (deleted []string, retErr error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := f.Close(); retErr == nil {
			retErr = err
		}
	}()
	tw := tar.NewWriter(f)
	if upper != "" {
		if deleted, err = walkTree(ctx, tw, upper, "", true); err != nil {
			return nil, err
		}
	}
	return deleted, tw.Close()
}

// walkTree adds dir's tree to tw under prefix. With whiteouts, overlay
// whiteouts (character devices 0:0) are returned instead of added.
//
// The tree may be changing: a checkpoint with --leave-running diffs the
// layer of a container that runs on. A file that vanishes before it is
// read is left out, and a file is taken at the size it had when opened
// (cut short or padded with zeros if it changes while copied), so the tar
// stays well formed.
func walkTree(ctx context.Context, tw *tar.Writer, dir, prefix string, whiteouts bool) ([]string, error) {
	var deleted []string
	gone := func(err error) bool { return errors.Is(err, fs.ErrNotExist) }
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = root.Close() }()
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if gone(err) && p != dir {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." && prefix == "" {
			return nil
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		fi, err := d.Info()
		if gone(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if whiteouts && isWhiteout(fi) {
			deleted = append(deleted, "/"+filepath.ToSlash(rel))
			return nil
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(rel); gone(err) {
				return nil
			} else if err != nil {
				return err
			}
		}
		var f *os.File
		if fi.Mode().IsRegular() {
			if f, fi, err = openRegular(root, rel); err != nil {
				return err
			}
			if f == nil {
				return nil // swapped for something else since the walk saw it
			}
			defer func() { _ = f.Close() }()
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if f == nil {
			return nil
		}
		n, err := io.CopyN(tw, f, hdr.Size)
		if errors.Is(err, io.EOF) {
			// Cut short while copied: pad to the size in the header.
			_, err = io.CopyN(tw, zeros{}, hdr.Size-n)
		}
		return err
	})
	return deleted, err
}

// openRegular opens rel under root if it is still a regular file: the walk
// saw one, but a running container may have replaced it since with a
// symlink (never followed, and none leads out of root), a FIFO (never
// blocked on) or nothing. It returns a nil file for what is left out.
func openRegular(root *os.Root, rel string) (*os.File, fs.FileInfo, error) {
	// The parent through root (no component leads out of it), the file
	// itself with O_NOFOLLOW: root would follow a last-component symlink.
	parent, err := root.Open(filepath.Dir(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = parent.Close() }()
	fd, err := unix.Openat(int(parent.Fd()), filepath.Base(rel), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func isWhiteout(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

// IsArchive reports whether path names a checkpoint archive: an absolute
// path to a tar holding config.dump. Image references never start with /.
func IsArchive(path string) bool {
	if !filepath.IsAbs(path) {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return false
		}
		if strings.TrimPrefix(hdr.Name, "./") == ConfigDump {
			return true
		}
	}
}
