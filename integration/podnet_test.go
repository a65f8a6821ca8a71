package integration

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/network"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pods made through the socket reach each other by IP, a hostPort reaches a
// pod from the host, and a hostNetwork pod stays in the host's namespace.
func TestPodNetworking(t *testing.T) {
	d := newDaemon(t, "")
	ctx := ctxT(t)
	server := podSandboxConfig("server")
	server.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 7000, HostPort: 18099}}
	run := func(cfg *runtime.PodSandboxConfig) (string, string) {
		t.Helper()
		resp, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		st, err := d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
		if err != nil {
			t.Fatal(err)
		}
		return resp.PodSandboxId, st.Status.GetNetwork().GetIp()
	}
	srvID, srvIP := run(server)
	cliID, _ := run(podSandboxConfig("client"))
	netns := func(id string) string { return filepath.Join(d.dir, "run", "netns", id) }

	stop := echoServerIn(t, netns(srvID), ":7000")
	defer stop()
	echoFrom(t, netns(cliID), net.JoinHostPort(srvIP, "7000"))
	// From the host, to the hostPort on the bridge's address (a local
	// address of the network the test made).
	echoFrom(t, "/proc/self/ns/net", "10.231.0.1:18099")

	host := podSandboxConfig("hostnet")
	host.Linux.Sysctls = nil
	host.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
	hostID, hostIP := run(host)
	if hostIP != "" {
		t.Errorf("hostNetwork pod got IP %q", hostIP)
	}
	if _, err := os.Stat(netns(hostID)); !os.IsNotExist(err) {
		t.Errorf("hostNetwork pod has a netns: %v", err)
	}
	for _, id := range []string{srvID, cliID, hostID} {
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	assertNoPodLeaks(t, d)
}

func echoServerIn(t *testing.T, nsPath, addr string) func() {
	t.Helper()
	var l net.Listener
	if err := network.WithNetNS(nsPath, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return func() { l.Close() }
}

func echoFrom(t *testing.T, nsPath, addr string) {
	t.Helper()
	var c net.Conn
	if err := network.WithNetNS(nsPath, func() (err error) { c, err = net.DialTimeout("tcp", addr, 3*time.Second); return err }); err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := "ping " + addr
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo via %s = %q, %v", addr, buf, err)
	}
}
