// Package client is the host side of the agent protocol: it dials the
// socket behind a VM's agent port, runs a yamux session over it and calls
// the Agent service over ttrpc on one of its streams.
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"github.com/hashicorp/yamux"
	"google.golang.org/protobuf/proto"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// Client calls one VM's agent; it is safe for concurrent use. A call made
// with no session up dials one. A session that breaks (the socket closed,
// QEMU's chardev reset, keepalives unanswered) is dropped, and the next call
// dials again: the client survives host-side disconnects. Calls themselves
// are not retried, except by WaitReady (Health is idempotent).
type Client struct {
	network, address string

	mu     sync.Mutex
	sess   *yamux.Session
	tc     *ttrpc.Client
	svc    api.AgentService
	closed bool
}

// New returns a client of the agent at addr: "unix:///path" or "/path"
// (the unix socket of QEMU's chardev). Nothing is dialled yet.
func New(addr string) (*Client, error) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		return &Client{network: "unix", address: strings.TrimPrefix(addr, "unix://")}, nil
	case strings.HasPrefix(addr, "/"):
		return &Client{network: "unix", address: addr}, nil
	}
	return nil, fmt.Errorf("agent address %q: want unix:///path", addr)
}

// Address is what New was given, normalised.
func (c *Client) Address() string { return c.network + "://" + c.address }

func (c *Client) service(ctx context.Context) (api.AgentService, *yamux.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, net.ErrClosed
	}
	if c.sess != nil && !c.sess.IsClosed() {
		return c.svc, c.sess, nil
	}
	c.dropLocked()
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return nil, nil, fmt.Errorf("dial agent: %w", err)
	}
	sess, err := yamux.Client(conn, api.SessionConfig())
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("agent session: %w", err)
	}
	stream, err := sess.Open()
	if err == nil {
		_, err = stream.Write([]byte{api.StreamRPC})
	}
	if err != nil {
		_ = sess.Close()
		return nil, nil, fmt.Errorf("agent stream: %w", err)
	}
	c.sess, c.tc = sess, ttrpc.NewClient(stream)
	c.svc = api.NewAgentClient(c.tc)
	return c.svc, sess, nil
}

// dropLocked closes the current session, if any.
func (c *Client) dropLocked() {
	if c.tc != nil {
		_ = c.tc.Close()
	}
	if c.sess != nil {
		_ = c.sess.Close()
	}
	c.sess, c.tc, c.svc = nil, nil, nil
}

// drop closes sess if it is still the current session.
func (c *Client) drop(sess *yamux.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == sess {
		c.dropLocked()
	}
}

// call runs fn on a session, dropping the session if the call broke it.
// The agent's error classes (NotFound, AlreadyExists, ...) come back as
// errdefs errors.
func (c *Client) call(ctx context.Context, fn func(api.AgentService) error) error {
	svc, sess, err := c.service(ctx)
	if err != nil {
		return err
	}
	err = fn(svc)
	if err != nil && (sess.IsClosed() || errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, net.ErrClosed)) {
		c.drop(sess)
		return fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	if err != nil {
		return errgrpc.ToNative(err)
	}
	return nil
}

// ErrDisconnected marks a call that the session's end cut short: whether
// the agent acted on it is unknown; a later call dials anew.
var ErrDisconnected = errors.New("agent session lost")

// Call runs fn against the agent's service (see call): the other RPCs of
// the Agent service, without a wrapper each.
func (c *Client) Call(ctx context.Context, fn func(api.AgentService) error) error {
	return c.call(ctx, fn)
}

// OpenStream opens a stream of kind (api.StreamExec, StreamAttach,
// StreamPort) on the session and writes its header. The caller owns the
// stream and closes it.
func (c *Client) OpenStream(ctx context.Context, kind byte, header proto.Message) (net.Conn, error) {
	_, sess, err := c.service(ctx)
	if err != nil {
		return nil, err
	}
	stream, err := sess.Open()
	if err != nil {
		c.drop(sess)
		return nil, fmt.Errorf("open agent stream: %w: %w", ErrDisconnected, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = stream.Close() })
	defer stop()
	if _, err := stream.Write([]byte{kind}); err != nil {
		_ = stream.Close()
		return nil, fmt.Errorf("open agent stream: %w", err)
	}
	if err := api.WriteHeader(stream, header); err != nil {
		_ = stream.Close()
		return nil, fmt.Errorf("open agent stream: %w", err)
	}
	return stream, nil
}

// Health asks the agent how the guest is.
func (c *Client) Health(ctx context.Context) (*api.HealthResponse, error) {
	var resp *api.HealthResponse
	err := c.call(ctx, func(s api.AgentService) (err error) {
		resp, err = s.Health(ctx, &api.HealthRequest{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("agent health: %w", err)
	}
	if resp.Protocol != api.Protocol {
		return resp, fmt.Errorf("agent speaks protocol %d, this host %d", resp.Protocol, api.Protocol)
	}
	return resp, nil
}

// Shutdown asks the agent to sync and power the guest off. The reply may be
// lost as the VM stops; the caller waits for the VMM to exit.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, func(s api.AgentService) error {
		if _, err := s.Shutdown(ctx, &api.ShutdownRequest{}); err != nil {
			return fmt.Errorf("agent shutdown: %w", err)
		}
		return nil
	})
}

// WaitReady calls Health until it answers or ctx ends. Each attempt is
// bounded by attempt (doubling up to 8×): a session whose first bytes the
// guest dropped (it closed its port as they arrived) is abandoned and a
// fresh one dialled. Dial errors (the socket not there yet) retry quickly.
func (c *Client) WaitReady(ctx context.Context, attempt time.Duration) (*api.HealthResponse, error) {
	limit := attempt
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, limit)
		resp, err := c.Health(actx)
		cancel()
		if err == nil {
			return resp, nil
		}
		if resp != nil { // protocol mismatch: retrying cannot help
			return nil, err
		}
		last = err
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent not ready: %w (last error: %v)", ctx.Err(), last)
		}
		if actx.Err() != nil {
			c.reset()
			limit = min(2*limit, 8*attempt)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent not ready: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// reset drops the current session; the next call dials a new one.
func (c *Client) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked()
}

// Close drops the session; later calls fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.dropLocked()
	return nil
}
