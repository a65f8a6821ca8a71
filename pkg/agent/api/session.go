package api

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// PortName is the name of the virtio-serial port the agent serves on
// (QEMU's virtserialport name=, the guest's /sys/class/virtio-ports/*/name).
const PortName = "cradle.agent"

// The guest's side of a pod: where the agent mounts the pod's shared
// directory (virtiofs, tag SharedTag), and the pod's /dev/shm tmpfs.
// Host-built container specs name these paths.
const (
	SharedTag      = "cradle"
	GuestSharedDir = "/run/cradle/shared"
	GuestShmDir    = "/run/cradle/shm"
	// GuestRuntime is the OCI runtime the initramfs carries.
	GuestRuntime = "/usr/bin/crun"
)

// SessionConfig is the yamux configuration both ends of the port use: the
// serial port is one byte stream, yamux multiplexes the ttrpc connection
// and (in later milestones) process IO streams over it, with per-stream
// flow control and keepalives that notice a dead peer.
func SessionConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = true
	c.KeepAliveInterval = 10 * time.Second
	// A guest under TCG on a loaded host can be slow to drain the port.
	c.ConnectionWriteTimeout = 30 * time.Second
	c.StreamOpenTimeout = 30 * time.Second
	c.LogOutput = io.Discard
	return c
}
