package guest

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// connPair is a connected pair of unix stream sockets: conns that can
// half-close, as the agent's yamux streams can.
func connPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// echoOnce serves one connection: reads to EOF, writes it back, closes.
func echoOnce(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		_, _ = c.Write(b)
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func TestServePort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	host, guest := connPair(t)
	go ServePort(ctx, guest, &api.PortForwardRequest{Port: int32(echoOnce(t))})
	typ, _, err := api.ReadFrame(host)
	if err != nil || typ != api.FrameReady {
		t.Fatalf("first frame %d, %v; want Ready", typ, err)
	}
	if _, err := host.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// Half-close: the echo server sees EOF, answers, and the answer still
	// comes back.
	if err := host.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = host.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(host)
	if err != nil || string(b) != "hello" {
		t.Errorf("read %q, %v; want hello", b, err)
	}
}

func TestServePortFails(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	tests := []struct {
		name string
		port int32
		want string
	}{
		{"refused", int32(closed), "connection refused"},
		{"out of range", 70000, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, guest := connPair(t)
			go ServePort(context.Background(), guest, &api.PortForwardRequest{Port: tt.port})
			typ, p, err := api.ReadFrame(host)
			if err != nil || typ != api.FrameError || !strings.Contains(string(p), tt.want) {
				t.Errorf("frame %d %q, %v; want an Error frame with %q", typ, p, err, tt.want)
			}
		})
	}
}
