package oci

import (
	cseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultSeccompProfile is the RuntimeDefault profile for a container of
// this host's architecture holding caps in its bounding set: containerd's
// (the allow-list Docker, containerd and CRI-O ship). Anything not listed
// fails with EPERM; syscalls that need a capability are allowed only with
// it; clone may not create namespaces without CAP_SYS_ADMIN; clone3, whose
// flags seccomp cannot read, fails with ENOSYS so that libcs fall back to
// clone; socket(2) refuses AF_ALG and AF_VSOCK.
func DefaultSeccompProfile(caps []string) *specs.LinuxSeccomp {
	return cseccomp.DefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}})
}
