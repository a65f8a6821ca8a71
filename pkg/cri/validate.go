package cri

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// maxHostname is the kernel's HOST_NAME_MAX: sethostname(2) takes no more.
// kubelet sends a pod's hostname (a DNS label of up to 63 characters) or,
// with setHostnameAsFQDN, its FQDN, which it refuses beyond 64.
const maxHostname = 64

// validHostname checks a pod's hostname as an RFC 1123 host name: dot-
// separated labels of 1 to 63 letters, digits and hyphens, neither starting
// nor ending with a hyphen, 64 characters at most. It goes into the pod's
// UTS namespace and its /etc/hostname and /etc/hosts, where a newline or a
// space would forge entries. Empty is fine: the engine then uses the pod's
// name (or, for a host-network pod, the node's hostname).
func validHostname(h string) error {
	if h == "" {
		return nil
	}
	if len(h) > maxHostname {
		return fmt.Errorf("pod hostname %q is longer than %d characters: %w", h, maxHostname, errdefs.ErrInvalidArgument)
	}
	for _, label := range strings.Split(h, ".") {
		if !validLabel(label) {
			return fmt.Errorf("pod hostname %q is not an RFC 1123 host name (label %q): %w", h, label, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range []byte(l) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
