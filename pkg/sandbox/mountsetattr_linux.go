package sandbox

import (
	"errors"

	"golang.org/x/sys/unix"
)

// mountSetattrWorks reports whether mount_setattr(2) (Linux 5.12), which
// recursive read-only mounts need, exists. It calls mount_setattr(2) with an invalid fd: ENOSYS means
// the kernel lacks it, EBADF means the call exists.
func mountSetattrWorks() bool {
	err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
}
