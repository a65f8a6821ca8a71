package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/network"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Two daemons on one host (own root, state, socket, bridge and subnet),
// each with a hostPort pod, restarted in turn while both hostPorts are
// probed without pause: neither start touches the other's rules (issue 14,
// item 4: one shared nftables table, flushed and swept by every start).
func TestTwoDaemonsSideBySideKeepTheirHostPorts(t *testing.T) {
	a := newDaemonNet(t, t.TempDir(), testBridge, testSubnet, "")
	b := newDaemonNet(t, t.TempDir(), testBridge2, testSubnet2, "")
	ctx := ctxT(t)
	type inst struct {
		d    *daemon
		port int32
		pod  string
	}
	insts := []*inst{{d: a, port: 18101}, {d: b, port: 18102}}
	var addrs []string
	for _, in := range insts {
		cfg := podSandboxConfig(fmt.Sprintf("hostport-%d", in.port))
		cfg.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 7000, HostPort: in.port}}
		resp, err := in.d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		in.pod = resp.PodSandboxId
		// Removed before the daemons stop, even when the test fails early.
		t.Cleanup(func() {
			_, _ = in.d.Runtime.RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: in.pod})
		})
		stop := echoServerIn(t, filepath.Join(in.d.dir, "run", "netns", in.pod), ":7000")
		defer stop()
		gw := net.ParseIP(in.d.Subnet[:len(in.d.Subnet)-len("0/24")] + "1")
		addrs = append(addrs, net.JoinHostPort(gw.String(), fmt.Sprint(in.port)), net.JoinHostPort("127.0.0.1", fmt.Sprint(in.port)))
	}
	for _, addr := range addrs {
		if err := echoOnce(addr); err != nil {
			t.Fatalf("before any restart: %v", err)
		}
	}

	// Probe every address without pause while the daemons restart.
	var mu sync.Mutex
	var failures []string
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			for _, addr := range addrs {
				if err := echoOnce(addr); err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for round := range 2 {
		for _, in := range insts {
			in.d.Stop()
			in.d.Start()
			for _, addr := range addrs {
				if err := echoOnce(addr); err != nil {
					t.Errorf("round %d, after restarting the daemon on %s: %v", round, in.d.Bridge, err)
				}
			}
		}
	}
	close(done)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d probes failed during the restarts, first: %s", len(failures), failures[0])
	}
	// Each daemon has its own table, named from its bridge.
	for _, in := range insts {
		if !contains(in.d.Logs(), network.TableName(in.d.Bridge)) {
			t.Errorf("daemon on %s does not log its table %s", in.d.Bridge, network.TableName(in.d.Bridge))
		}
	}
	for _, in := range insts {
		if _, err := in.d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: in.pod}); err != nil {
			t.Fatal(err)
		}
	}
	assertNoPodLeaks(t, a)
	assertNoPodLeaks(t, b)
}

// echoOnce dials addr from the test's namespace and checks one echo.
func echoOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	msg := "ping " + addr
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("write %s: %w", addr, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		return fmt.Errorf("echo via %s = %q, %v", addr, buf, err)
	}
	return nil
}
