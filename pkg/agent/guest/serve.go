package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"github.com/hashicorp/yamux"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// Streams serves the yamux streams that do not carry ttrpc: process IO
// and port-forward connections. Each method owns conn and closes it.
type Streams interface {
	ServeExec(ctx context.Context, conn net.Conn, req *api.ExecRequest)
	ServeAttach(ctx context.Context, conn net.Conn, req *api.AttachRequest)
	ServePort(ctx context.Context, conn net.Conn, req *api.PortForwardRequest)
}

// ServeSession serves svc over one host session on conn: a yamux server
// session whose streams each start with a kind byte (api.Stream*): ttrpc
// connections of the Agent service, or, when streams is not nil, process
// IO and port-forward streams. It returns when the host goes away (conn
// reaches EOF) or ctx ends, and closes conn.
func ServeSession(ctx context.Context, conn io.ReadWriteCloser, svc api.AgentService, streams Streams) error {
	sess, err := yamux.Server(conn, api.SessionConfig())
	if err != nil {
		conn.Close()
		return fmt.Errorf("yamux session: %w", err)
	}
	defer func() { _ = sess.Close() }()
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(errorsToGRPC))
	if err != nil {
		return fmt.Errorf("ttrpc server: %w", err)
	}
	defer func() { _ = srv.Close() }()
	api.RegisterAgentService(srv, svc)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = sess.Close() })
	defer stop()
	rpc := newChanListener(sess.Addr())
	go demux(ctx, sess, rpc, streams)
	err = srv.Serve(ctx, rpc)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if sess.IsClosed() || errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, ttrpc.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil // the host went away; the caller waits for the next one
	}
	return err
}

// errorsToGRPC gives the host the class of an error (NotFound,
// AlreadyExists, ...) through ttrpc's status codes.
func errorsToGRPC(ctx context.Context, u ttrpc.Unmarshaler, _ *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
	resp, err := m(ctx, u)
	if err != nil {
		return resp, errgrpc.ToGRPC(err)
	}
	return resp, nil
}

// demux accepts the session's streams, reads each one's kind and hands it
// on; it closes rpc when the session ends.
func demux(ctx context.Context, sess *yamux.Session, rpc *chanListener, streams Streams) {
	defer func() { _ = rpc.Close() }()
	for {
		conn, err := sess.Accept()
		if err != nil {
			return
		}
		go func() {
			var kind [1]byte
			if _, err := io.ReadFull(conn, kind[:]); err != nil {
				_ = conn.Close()
				return
			}
			if kind[0] == api.StreamRPC {
				if !rpc.deliver(conn) {
					_ = conn.Close()
				}
				return
			}
			if streams == nil {
				_ = conn.Close()
				return
			}
			serveStream(ctx, kind[0], conn, streams)
		}()
	}
}

func serveStream(ctx context.Context, kind byte, conn net.Conn, streams Streams) {
	switch kind {
	case api.StreamExec:
		var req api.ExecRequest
		if err := api.ReadHeader(conn, &req); err == nil {
			streams.ServeExec(ctx, conn, &req)
			return
		}
	case api.StreamAttach:
		var req api.AttachRequest
		if err := api.ReadHeader(conn, &req); err == nil {
			streams.ServeAttach(ctx, conn, &req)
			return
		}
	case api.StreamPort:
		var req api.PortForwardRequest
		if err := api.ReadHeader(conn, &req); err == nil {
			streams.ServePort(ctx, conn, &req)
			return
		}
	}
	_ = conn.Close()
}

// chanListener is a net.Listener of the connections demux delivers.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// logSessionEnd is how a session's end is logged at the serving loop.
func logSessionEnd(log *slog.Logger, err error) {
	if err != nil {
		log.Warn("host session ended", "error", err)
		return
	}
	log.Debug("host session ended")
}
