package guest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// portDialTimeout bounds the connection to a port of the guest's loopback.
const portDialTimeout = 5 * time.Second

// ServePort connects the stream to req.port on the guest's loopback
// (127.0.0.1, else [::1]): a Ready frame, then raw bytes both ways, each
// direction closed on its own (half-close) until both are done. A failed
// connection ends with an Error frame carrying the dial error's text
// ("connection refused" and all).
func ServePort(ctx context.Context, conn net.Conn, req *api.PortForwardRequest) {
	defer func() { _ = conn.Close() }()
	fw := &frameWriter{w: conn}
	if req.Port <= 0 || req.Port > 65535 {
		fw.fail(fmt.Errorf("port %d out of range", req.Port))
		return
	}
	target, err := dialLoopback(ctx, int(req.Port))
	if err != nil {
		fw.fail(err)
		return
	}
	defer func() { _ = target.Close() }()
	if err := fw.frame(api.FrameReady, nil); err != nil {
		return
	}
	splice(conn, target)
}

// dialLoopback dials port on 127.0.0.1, then on [::1]; the IPv4 error is
// the one reported.
func dialLoopback(ctx context.Context, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: portDialTimeout}
	p := strconv.Itoa(port)
	c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c, nil
	}
	c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, nil
	}
	return nil, err4
}

// splice copies a→b and b→a; each direction's end closes the other side's
// writing half. It returns when both directions are done.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	for _, dir := range [][2]net.Conn{{a, b}, {b, a}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(dir[1], dir[0])
			closeWrite(dir[1])
		}()
	}
	wg.Wait()
}

// closeWrite closes conn's writing half: CloseWrite where it has one (TCP,
// unix sockets); a yamux stream's Close is a half-close already.
func closeWrite(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = conn.Close()
}
