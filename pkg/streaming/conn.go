package streaming

import (
	"context"
	"errors"
	"net"
	"sync"
)

// watchListener hands out connections that cancel their context when the
// peer goes away, and can close them all, hijacked or not (http.Server
// forgets a connection once a handler hijacks it, as SPDY and WebSocket
// upgrades do, and net/http cancels a request's context on neither).
type watchListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*watchedConn]struct{}
}

func newWatchListener(l net.Listener) *watchListener {
	return &watchListener{Listener: l, conns: map[*watchedConn]struct{}{}}
}

func (l *watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	wc := &watchedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[wc] = struct{}{}
	l.mu.Unlock()
	return wc, nil
}

// connContext is http.Server's ConnContext: requests on c get a context
// that ends with the connection.
func (l *watchListener) connContext(ctx context.Context, c net.Conn) context.Context {
	wc, ok := c.(*watchedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	wc.mu.Lock()
	wc.cancel = cancel
	gone := wc.gone
	wc.mu.Unlock()
	if gone {
		cancel()
	}
	return ctx
}

func (l *watchListener) closeConns() {
	l.mu.Lock()
	conns := make([]*watchedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// watchedConn ends its context on a failed read (EOF, reset: the peer is
// gone; deadlines, which net/http uses to stop its own reads, do not
// count) and on Close.
type watchedConn struct {
	net.Conn
	l      *watchListener
	mu     sync.Mutex
	cancel context.CancelFunc
	gone   bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			c.end()
		}
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.end()
	return c.Conn.Close()
}

func (c *watchedConn) end() {
	c.mu.Lock()
	c.gone = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
}
