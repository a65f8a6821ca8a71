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
//     gives containers their devices through the runtime spec;
//   - whiteouts of nothing, "." or ".." (.wh., .wh.., .wh...): they name no
//     entry of the directory (the opaque marker .wh..wh..opq is legal).
//
// It also finds each hard link's target (linkTarget): copied up from a
// lower layer when the layer is applied straight into an upperdir, refused
// (InvalidArgument) when no layer holds it.
//
// It is stateful (it remembers the layer's symlinks): one guard per layer.
type layerGuard struct {
	symlinks map[string]bool
	root     string   // where the layer is applied; "" = not known
	lowers   []string // the layers below root, topmost first, when root is an upperdir
}

func newLayerGuard(root string, lowers []string) *layerGuard {
	return &layerGuard{symlinks: map[string]bool{}, root: root, lowers: lowers}
}

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
	if base, ok := strings.CutPrefix(path.Base(name), whiteoutPrefix); ok && (base == "" || base == "." || base == "..") {
		return false, unsafe(name, "is a whiteout of %q, which is no entry of its directory", base)
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
		if err := g.linkTarget(name, target); err != nil {
			return false, err
		}
	}
	if h.Typeflag == tar.TypeSymlink {
		g.symlinks[name] = true
	} else {
		delete(g.symlinks, name)
	}
	return true, nil
}

// whiteoutPrefix starts the name of a whiteout entry (OCI image spec).
const whiteoutPrefix = ".wh."

// linkTarget makes sure the target of hard link name exists where the layer
// is applied: there already, or copied up from the lower layer that shows
// it. A target under a symlink of the root is left to containerd, which
// resolves it inside the root.
func (g *layerGuard) linkTarget(name, target string) error {
	if g.root == "" {
		return nil
	}
	parts := strings.Split(target, "/")
	found, _, err := lookIn(g.root, parts)
	if err != nil {
		return fmt.Errorf("hard link %q: %w", name, err)
	}
	if found || hasSymlinkAncestor(g.root, parts) {
		return nil
	}
	lower, err := lowerOf(g.lowers, target)
	if err != nil {
		return fmt.Errorf("hard link %q: %w", name, err)
	}
	if lower == "" {
		return fmt.Errorf("entry %q: hard link to %q, which no layer holds: %w", name, target, errdefs.ErrInvalidArgument)
	}
	return copyUp(g.root, lower, g.lowers, target)
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
