package storage

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	"golang.org/x/sys/unix"
)

// FsUsage is the space one filesystem role takes.
type FsUsage struct {
	Mountpoint string
	UsedBytes  uint64
	Inodes     uint64
	// CapacityBytes and InodesFree are of the whole filesystem holding
	// Mountpoint (statfs); RootfsUsage fills them.
	CapacityBytes uint64
	InodesFree    uint64
}

// FsUsage reports the image filesystem (content blobs and unpacked layers)
// and the writable layers of containers (active snapshots), both under the
// store's root. Committed snapshots' usage is recorded at commit time, so
// only writable layers are walked.
func (s *Store) FsUsage(ctx context.Context) (imageFs, containerFs FsUsage, err error) {
	ctx = s.nsCtx(ctx)
	imageFs.Mountpoint, containerFs.Mountpoint = s.SnapshotRoot(), s.SnapshotRoot()
	err = s.content.Walk(ctx, func(info content.Info) error {
		imageFs.UsedBytes += uint64(info.Size)
		imageFs.Inodes++
		return nil
	})
	if err != nil {
		return FsUsage{}, FsUsage{}, fmt.Errorf("walk content: %w", err)
	}
	err = s.sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		u, err := s.sn.Usage(ctx, info.Name)
		if err != nil {
			return nil // removed while walking
		}
		target := &imageFs
		if info.Kind == snapshots.KindActive {
			target = &containerFs
		}
		target.UsedBytes += uint64(u.Size)
		target.Inodes += uint64(u.Inodes)
		return nil
	})
	if err != nil {
		return FsUsage{}, FsUsage{}, fmt.Errorf("walk snapshots: %w", err)
	}
	return imageFs, containerFs, nil
}

// RootfsUsage reports the space a container's writable layer (the rootfs
// snapshot named key) takes: its upper directory, walked; and the size and
// free inodes of the filesystem it is on (cAdvisor's container_fs_limit_bytes
// and container_fs_inodes_free).
func (s *Store) RootfsUsage(ctx context.Context, key string) (FsUsage, error) {
	u, err := s.sn.Usage(s.nsCtx(ctx), key)
	if err != nil {
		return FsUsage{}, fmt.Errorf("usage of rootfs %q: %w", key, err)
	}
	out := FsUsage{Mountpoint: s.SnapshotRoot(), UsedBytes: uint64(u.Size), Inodes: uint64(u.Inodes)}
	var fs unix.Statfs_t
	if err := unix.Statfs(out.Mountpoint, &fs); err != nil {
		return FsUsage{}, fmt.Errorf("statfs %s: %w", out.Mountpoint, err)
	}
	out.CapacityBytes, out.InodesFree = fs.Blocks*uint64(fs.Bsize), fs.Ffree
	return out, nil
}
