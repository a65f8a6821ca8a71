package client_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/agent/client"
	"github.com/cradle-runtime/cradle/pkg/agent/guest"
)

// fakePort stands in for QEMU's chardev socket with the guest agent behind
// it: each accepted connection is one host session of guest.ServeSession.
func fakePort(t *testing.T, svc api.AgentService) (addr string, conns chan net.Conn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns = make(chan net.Conn, 8)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() { _ = guest.ServeSession(ctx, c, svc, nil) }()
		}
	}()
	return "unix://" + path, conns
}

func TestHealthAndReconnect(t *testing.T) {
	var off atomic.Int32
	svc := &guest.Service{Version: "test", Log: discard(), PowerOff: func() { off.Add(1) }}
	addr, conns := fakePort(t, svc)
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	h, err := c.WaitReady(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h.KernelRelease == "" || h.UptimeNs <= 0 || h.AgentVersion != "test" || h.Protocol != api.Protocol {
		t.Errorf("health = %v", h)
	}

	// The "VM side" drops the connection: the next calls re-dial.
	(<-conns).Close()
	var ok bool
	for range 50 {
		if _, err := c.Health(ctx); err == nil {
			ok = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !ok {
		t.Fatal("Health never recovered after a disconnect")
	}
	if got := len(conns); got != 1 {
		t.Errorf("%d new connections after the disconnect, want 1", got)
	}
}

func TestShutdownPowersOff(t *testing.T) {
	done := make(chan struct{})
	svc := &guest.Service{Version: "test", Log: discard(), PowerOff: func() { close(done) }}
	addr, _ := fakePort(t, svc)
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("PowerOff not called")
	}
}

func TestNewAddress(t *testing.T) {
	for addr, ok := range map[string]bool{"unix:///run/x.sock": true, "/run/x.sock": true, "vsock://3:1024": false, "x.sock": false} {
		if _, err := client.New(addr); (err == nil) != ok {
			t.Errorf("New(%q) err = %v", addr, err)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
