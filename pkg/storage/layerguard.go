package storage

import (
	"archive/tar"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// ErrUnsafeLayer marks a layer that tries to write outside its rootfs or to
// create what an image layer may not hold. Such a layer fails its pull.
var ErrUnsafeLayer = errors.New("unsafe image layer")

// layerGuard vets each tar entry of one layer before containerd's archive
// code applies it. containerd already resolves every path inside the root;
// the guard turns the attempts themselves into a clear error, so a hostile
// image fails instead of being silently rewritten:
//
//   - absolute names and names that climb above the root with "..";
//   - hard links whose target is absolute or climbs above the root;
//   - entries (or hard link targets) below a symlink made earlier in the
//     same layer: a tar of a real directory tree never has those, they only
//     serve to write through the link;
//   - block and character devices, which no layer needs on a node that
//     gives containers their devices through the runtime spec.
//
// It is stateful (it remembers the layer's symlinks): one guard per layer.
type layerGuard struct {
	symlinks map[string]bool
}

func newLayerGuard() *layerGuard { return &layerGuard{symlinks: map[string]bool{}} }

// check is an archive.Filter. containerd has already run filepath.Clean on
// h.Name, so ".." can only appear as leading elements.
func (g *layerGuard) check(h *tar.Header) (bool, error) {
	name := h.Name
	if err := checkInside("entry", name); err != nil {
		return false, err
	}
	if link := g.underSymlink(name); link != "" {
		return false, unsafe(name, "is written through symlink %q created earlier in the layer", link)
	}
	switch h.Typeflag {
	case tar.TypeBlock, tar.TypeChar:
		return false, unsafe(name, "is a device node (%d:%d); image layers may not create devices", h.Devmajor, h.Devminor)
	case tar.TypeLink:
		target := path.Clean(h.Linkname)
		if err := checkInside("hard link target", target); err != nil {
			return false, unsafe(name, "%v", err)
		}
		if link := g.underSymlink(target); link != "" {
			return false, unsafe(name, "is a hard link through symlink %q", link)
		}
	}
	if h.Typeflag == tar.TypeSymlink {
		g.symlinks[name] = true
	} else {
		delete(g.symlinks, name)
	}
	return true, nil
}

// checkInside rejects absolute paths and paths that leave the root.
func checkInside(what, p string) error {
	if strings.HasPrefix(p, "/") {
		return unsafe(p, "is an absolute %s", what)
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return unsafe(p, "%s climbs out of the layer root", what)
	}
	return nil
}

// underSymlink returns the symlink of this layer that is a proper ancestor of
// p, or "".
func (g *layerGuard) underSymlink(p string) string {
	if len(g.symlinks) == 0 {
		return ""
	}
	for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if g.symlinks[dir] {
			return dir
		}
	}
	return ""
}

func unsafe(entry, format string, args ...any) error {
	return fmt.Errorf("%w: entry %q %s: %w", ErrUnsafeLayer, entry, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}
