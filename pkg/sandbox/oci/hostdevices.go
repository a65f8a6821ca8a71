package oci

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// HostDevices is the host's device nodes: the DeviceLookup of a real node,
// and the list a privileged container gets.
type HostDevices struct {
	// Dir is where List looks ("" : /dev).
	Dir string
}

var _ DeviceLookup = HostDevices{}

// DeviceInfo describes the node at hostPath, following symlinks (kubelet's
// device plugins hand out /dev/disk/by-id/... names). A path that is no
// device has an empty Type.
func (HostDevices) DeviceInfo(hostPath string) (Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(hostPath, &st); err != nil {
		return Device{}, &fs.PathError{Op: "stat", Path: hostPath, Err: err}
	}
	d := Device{Mode: fs.FileMode(st.Mode & 0o777), UID: st.Uid, GID: st.Gid,
		Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev))}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		d.Type = "c"
	case unix.S_IFBLK:
		d.Type = "b"
	}
	return d, nil
}

// skipDeviceDir says whether a privileged container does not get the
// nodes of the /dev directory called name from the host: it has its own
// pts, shm and mqueue; fd is the process's (as runc and containerd list
// them).
func skipDeviceDir(name string) bool {
	switch name {
	case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
		return true
	}
	return false
}

// List returns the paths of the device nodes under Dir (not symlinks to
// them, nor /dev/console, which the runtime sets up), for a privileged
// container.
func (h HostDevices) List() ([]string, error) {
	dir := h.Dir
	if dir == "" {
		dir = "/dev"
	}
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil // gone meanwhile, or unreadable: not ours to give
			}
			return err
		}
		if e.IsDir() {
			if p != dir && skipDeviceDir(e.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type()&os.ModeDevice != 0 && e.Name() != "console" {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}
