package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/containerd/ttrpc"
	"github.com/hashicorp/yamux"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// ServeSession serves svc over one host session on conn: a yamux server
// session whose streams each carry a ttrpc connection. It returns when the
// host goes away (conn reaches EOF) or ctx ends, and closes conn.
func ServeSession(ctx context.Context, conn io.ReadWriteCloser, svc api.AgentService) error {
	sess, err := yamux.Server(conn, api.SessionConfig())
	if err != nil {
		conn.Close()
		return fmt.Errorf("yamux session: %w", err)
	}
	defer func() { _ = sess.Close() }()
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("ttrpc server: %w", err)
	}
	defer func() { _ = srv.Close() }()
	api.RegisterAgentService(srv, svc)
	stop := context.AfterFunc(ctx, func() { _ = sess.Close() })
	defer stop()
	err = srv.Serve(ctx, sess)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if sess.IsClosed() || errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, ttrpc.ErrServerClosed) {
		return nil // the host went away; the caller waits for the next one
	}
	return err
}

// logSessionEnd is how a session's end is logged at the serving loop.
func logSessionEnd(log *slog.Logger, err error) {
	if err != nil {
		log.Warn("host session ended", "error", err)
		return
	}
	log.Debug("host session ended")
}
