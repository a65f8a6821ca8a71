package streaming

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func listenLoopback(t *testing.T) *watchListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := newWatchListener(l)
	t.Cleanup(func() { _ = wl.Close() })
	return wl
}

// accept returns the server side of one connection and its context.
func accept(t *testing.T, wl *watchListener) (net.Conn, net.Conn, context.Context) {
	t.Helper()
	client, err := net.Dial("tcp", wl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return client, server, wl.connContext(context.Background(), server)
}

func TestWatchedConnEndsWithPeer(t *testing.T) {
	wl := listenLoopback(t)
	client, server, ctx := accept(t, wl)
	// A deadline (net/http stops its own reads so) is not the peer leaving.
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Fatal("read past the deadline succeeded")
	}
	if ctx.Err() != nil {
		t.Fatal("a read deadline ended the connection's context")
	}
	_ = server.SetReadDeadline(time.Time{})
	_ = client.Close()
	_, _ = server.Read(make([]byte, 1))
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the peer's close did not end the context")
	}
}

func TestCloseConnsEndsSessions(t *testing.T) {
	wl := listenLoopback(t)
	_, _, ctx1 := accept(t, wl)
	_, _, ctx2 := accept(t, wl)
	wl.closeConns()
	for i, ctx := range []context.Context{ctx1, ctx2} {
		if ctx.Err() == nil {
			t.Errorf("connection %d: context still live after closeConns", i)
		}
	}
	wl.mu.Lock()
	defer wl.mu.Unlock()
	if len(wl.conns) != 0 {
		t.Errorf("%d connections still tracked", len(wl.conns))
	}
}

// TestPipe: what the client sends reaches the pod, the client's end of
// input half-closes the pod's side, and the pod's answer comes back whole.
func TestPipe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // until the half-close
		_, _ = c.Write([]byte(strings.ToUpper(string(b))))
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	stream := &fakeStream{in: strings.NewReader("hello pod")}
	if err := pipe(conn, stream); err != nil {
		t.Fatalf("pipe = %v", err)
	}
	if got := stream.out.String(); got != "HELLO POD" {
		t.Errorf("client got %q", got)
	}
}

type fakeStream struct {
	in  io.Reader
	out strings.Builder
}

func (f *fakeStream) Read(p []byte) (int, error)  { return f.in.Read(p) }
func (f *fakeStream) Write(p []byte) (int, error) { return f.out.Write(p) }
