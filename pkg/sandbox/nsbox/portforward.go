package nsbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
)

// DialPort connects to port on the pod's loopback from a thread inside the
// pod's network namespace (the socket stays in that namespace; the thread
// goes back). IPv4 first, then IPv6 if nothing listens on 127.0.0.1. A pod
// on the host's network is dialled from the host.
func (b *Backend) DialPort(ctx context.Context, pod *sandbox.Pod, port int32) (net.Conn, error) {
	if pod.NetNS == "" {
		return dialLoopback(ctx, port)
	}
	var conn net.Conn
	err := network.WithNetNS(pod.NetNS, func() error {
		var err error
		conn, err = dialLoopback(ctx, port)
		return err
	})
	return conn, err
}

func dialLoopback(ctx context.Context, port int32) (net.Conn, error) {
	var d net.Dialer
	p := strconv.Itoa(int(port))
	conn, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return conn, nil
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("dial port %d: %w", port, err)
	}
	conn, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return conn, nil
	}
	return nil, fmt.Errorf("dial port %d: %w", port, err) // the IPv4 refusal
}
