package api

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// PortName is the name of the virtio-serial port the agent serves on
// (QEMU's virtserialport name=, the guest's /sys/class/virtio-ports/*/name).
const PortName = "cradle.agent"

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
