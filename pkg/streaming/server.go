// Package streaming is cradle's exec / attach / port-forward server: the
// HTTP endpoint whose URLs the Exec, Attach and PortForward RPCs return,
// which kubelet proxies and kubectl (or crictl) speaks to. The protocols
// (SPDY and the WebSocket variants, v1 to v5) are k8s.io/cri-streaming's,
// the server kubelet's CRI runtimes share; this package runs it on its own
// listener and maps its sessions onto the engine.
//
// URLs are single-use: each carries a random token for one cached request,
// consumed by the first connection and expired after a minute (the
// library's fixed TTL). A session ends when its process ends or its client
// goes away: the connection's end cancels the session's context, which
// kills an exec's process and detaches an attach.
package streaming

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	cristreaming "k8s.io/cri-streaming/pkg/streaming"
)

// readHeaderTimeout bounds how long a client may take to send its request.
const readHeaderTimeout = 30 * time.Second

// Engine is what sessions run against (the sandbox Manager).
type Engine interface {
	Exec(ctx context.Context, containerID string, o sandbox.ExecOptions) (int32, error)
	Attach(ctx context.Context, containerID string, o sandbox.AttachOptions) error
	PortForward(ctx context.Context, podID string, port int32) (net.Conn, error)
}

// Config configures the server.
type Config struct {
	Address     string        // host:port; port 0 picks a free one
	IdleTimeout time.Duration // a session with no traffic this long is closed
}

// Server serves streaming sessions.
type Server struct {
	lib  cristreaming.Server
	http *http.Server
	lis  *watchListener
	log  *slog.Logger
}

// New listens on cfg.Address; Serve serves.
func New(cfg Config, e Engine, log *slog.Logger) (*Server, error) {
	lis, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("streaming server: listen on %s: %w", cfg.Address, err)
	}
	c := cristreaming.DefaultConfig
	c.Addr = lis.Addr().String()
	c.BaseURL = &url.URL{Scheme: "http", Host: lis.Addr().String()}
	if cfg.IdleTimeout > 0 {
		c.StreamIdleTimeout = cfg.IdleTimeout
	}
	lib, err := cristreaming.NewServer(c, &sessions{e: e, log: log})
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	wl := newWatchListener(lis)
	return &Server{
		lib: lib, lis: wl, log: log,
		http: &http.Server{Handler: lib, ConnContext: wl.connContext, ReadHeaderTimeout: readHeaderTimeout},
	}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Serve serves until ctx ends, then closes every connection (ending the
// sessions on them).
func (s *Server) Serve(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(s.lis) }()
	select {
	case err := <-served:
		s.lis.closeConns()
		return fmt.Errorf("streaming server: %w", err)
	case <-ctx.Done():
	}
	err := s.http.Close() // does not reach hijacked connections:
	s.lis.closeConns()
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// GetExec caches req and returns its single-use URL.
func (s *Server) GetExec(req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	return s.lib.GetExec(req)
}

// GetAttach caches req and returns its single-use URL.
func (s *Server) GetAttach(req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	return s.lib.GetAttach(req)
}

// GetPortForward caches req and returns its single-use URL.
func (s *Server) GetPortForward(req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	return s.lib.GetPortForward(req)
}
