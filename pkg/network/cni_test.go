package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

const cniBinDir = "/usr/lib/cni" // Debian's containernetworking-plugins

// cniEnv is a fake host whose Manager runs in CNI mode with Debian's
// bridge, host-local and portmap plugins; every plugin runs inside the fake
// host namespace, so their links and iptables chains vanish with it.
func cniEnv(t testing.TB) *testEnv {
	t.Helper()
	testutil.RequireRoot(t)
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		testutil.RequireBinary(t, filepath.Join(cniBinDir, p))
	}
	testutil.RequireBinary(t, "iptables") // portmap 1.1 programs iptables
	e := newEnv(t, func(c *config.Network) {
		c.Mode = config.NetworkCNI
		c.CNIBinDirs = []string{cniBinDir}
	})
	e.cfg.CNIConfDir = filepath.Join(e.dir, "net.d")
	if err := os.MkdirAll(e.cfg.CNIConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

// writeConflist writes a bridge + host-local + portmap list for subnet.
func (e *testEnv) writeConflist(file, bridge, subnet string) {
	e.t.Helper()
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "cradle-test-%[1]s",
  "plugins": [
    {"type": "bridge", "bridge": %[1]q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %[2]q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %[3]q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`, bridge, subnet, filepath.Join(e.dir, "cni-ipam"))
	if err := os.WriteFile(filepath.Join(e.cfg.CNIConfDir, file), []byte(conf), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func TestCNIPodsReachEachOtherAndHostPort(t *testing.T) {
	e := cniEnv(t)
	m := e.manager()
	if ok, _, msg := m.Ready(context.Background()); ok {
		t.Fatal("Ready with an empty conf dir")
	} else if !strings.Contains(msg, "no valid CNI network configuration") {
		t.Errorf("not-ready message = %q", msg)
	}
	e.writeConflist("10-test.conflist", "crcni0", "10.126.0.0/24")
	if ok, reason, msg := m.Ready(context.Background()); !ok {
		t.Fatalf("Ready = false, %s: %s", reason, msg)
	}
	nsA, resA := e.pod(m, "cni-a", PortMapping{Protocol: "tcp", ContainerPort: 8080, HostPort: 18080})
	nsB, resB := e.pod(m, "cni-b")
	if len(resA.IPs) != 1 || !strings.HasPrefix(resA.IPs[0].String(), "10.126.0.") || resA.IPs[0].Equal(resB.IPs[0]) {
		t.Fatalf("IPs: a=%v b=%v", resA.IPs, resB.IPs)
	}
	echoServer(t, nsA, ":8080")
	echo(t, nsB, net.JoinHostPort(resA.IPs[0].String(), "8080"))
	echo(t, e.hostNS, net.JoinHostPort(hostAddr, "18080"))
	echo(t, e.outsideNS, net.JoinHostPort(hostAddr, "18080")) // from beyond the host (prerouting)

	// A changed conf dir is used by the next pod, without a restart; pods
	// set up before keep (and are torn down with) their own list.
	e.writeConflist("05-new.conflist", "crcni1", "10.127.0.0/24")
	_, resC := e.pod(m, "cni-c")
	if !strings.HasPrefix(resC.IPs[0].String(), "10.127.0.") {
		t.Errorf("pod after conf change got %v, want 10.127.0.0/24", resC.IPs)
	}
	for _, id := range []string{"cni-a", "cni-b", "cni-c"} {
		e.remove(m, id)
		if err := m.Teardown(context.Background(), id); err != nil {
			t.Errorf("second Teardown %s: %v", id, err)
		}
	}
	assertNoCNILeaks(t, e)
}

func TestCNICrashReconcile(t *testing.T) {
	e := cniEnv(t)
	e.writeConflist("10-test.conflist", "crcni0", "10.126.0.0/24")
	m := e.manager()
	// Set up, then "forget" both pods: one with its netns still there, one
	// whose netns is already gone (DEL must still clean the host side).
	e.pod(m, "gone-1", PortMapping{Protocol: "tcp", ContainerPort: 80, HostPort: 8081})
	e.pod(m, "gone-2")
	if err := RemoveNetNS(filepath.Join(m.NetNSDir(), "gone-2")); err != nil {
		t.Fatal(err)
	}
	if err := e.manager().Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	assertNoCNILeaks(t, e)
}

func assertNoCNILeaks(t *testing.T, e *testEnv) {
	t.Helper()
	var veths []string
	for _, l := range testutil.Links(t, e.hostNS) {
		if strings.HasPrefix(l, "veth") {
			veths = append(veths, l)
		}
	}
	if len(veths) > 0 {
		t.Errorf("leaked veths in the fake host: %v", veths)
	}
	for _, d := range testutil.Files(t, filepath.Join(e.dir, "cni-ipam")) {
		for _, f := range testutil.Files(t, filepath.Join(e.dir, "cni-ipam", d)) {
			if f != "lock" && !strings.HasPrefix(f, "last_reserved_ip") {
				t.Errorf("leaked host-local lease %s/%s", d, f)
			}
		}
	}
	out, err := exec.Command("nsenter", "--net="+e.hostNS, "iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save in the fake host: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "CNI-DN-") {
			t.Errorf("leaked portmap chain or rule: %s", line)
		}
	}
	if r := testutil.Files(t, filepath.Join(e.state, "network", "pods")); len(r) > 0 {
		t.Errorf("leaked records: %v", r)
	}
	if n := testutil.Files(t, filepath.Join(e.state, "netns")); len(n) > 0 {
		t.Errorf("leaked netns: %v", n)
	}
}

// The conflist shipped for CNI mode parses and names only plugins Debian's
// containernetworking-plugins provides.
func TestShippedConflist(t *testing.T) {
	list, err := readConfList(filepath.Join("..", "..", "configs", "cni", "10-cradle.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "cradle" || len(list.Plugins) != 2 {
		t.Fatalf("list = %s with %d plugins", list.Name, len(list.Plugins))
	}
	for _, p := range list.Plugins {
		testutil.RequireBinary(t, filepath.Join(cniBinDir, p.Network.Type))
	}
	c := &cniNet{binDirs: []string{cniBinDir}}
	if err := c.checkPlugins(list); err != nil {
		t.Error(err)
	}
}

// A single-plugin .conf file is read as a list of one.
func TestReadSinglePluginConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "99-one.conf")
	if err := os.WriteFile(p, []byte(`{"cniVersion":"1.0.0","name":"one","type":"bridge"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := readConfList(p)
	if err != nil || list.Name != "one" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "bridge" {
		t.Fatalf("readConfList = %+v, %v", list, err)
	}
}

// Every step of a CNI Setup fails in turn; DEL undoes the ADD.
func TestCNISetupRollback(t *testing.T) {
	e := cniEnv(t)
	e.writeConflist("10-test.conflist", "crcni0", "10.126.0.0/24")
	m := e.manager()
	boom := errors.New("injected failure")
	for _, step := range []string{"record", "cni-add"} {
		t.Run(step, func(t *testing.T) {
			m.failAt = func(s string) error {
				if s == step {
					return boom
				}
				return nil
			}
			defer func() { m.failAt = nil }()
			ns, err := NewNetNS(m.NetNSDir(), "rb")
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Setup(context.Background(), PodNetwork{PodID: "rb", NetNSPath: ns,
				PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}}})
			if !errors.Is(err, boom) {
				t.Fatalf("Setup err = %v, want the injected failure", err)
			}
			if err := RemoveNetNS(ns); err != nil {
				t.Fatal(err)
			}
			assertNoCNILeaks(t, e)
		})
	}
}

// kill -9 right after the record is written and right after ADD; a new
// Manager's Reconcile(live=[]) runs DEL with the recorded list.
func TestCNICrashDuringSetup(t *testing.T) {
	e := cniEnv(t)
	e.writeConflist("10-test.conflist", "crcni0", "10.126.0.0/24")
	for _, step := range []string{"record", "cni-add"} {
		t.Run(step, func(t *testing.T) {
			crash(t, e, step)
			if step == "cni-add" {
				leases := 0
				for _, f := range testutil.Files(t, filepath.Join(e.dir, "cni-ipam", "cradle-test-crcni0")) {
					if f != "lock" && !strings.HasPrefix(f, "last_reserved_ip") {
						leases++
					}
				}
				if leases != 1 {
					t.Fatalf("the crash after ADD left %d leases, want 1 to recover", leases)
				}
			}
			if err := e.manager().Reconcile(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			assertNoCNILeaks(t, e)
		})
	}
}

// In auto mode new pods get the built-in network while the conf dir holds
// no configuration and the CNI one once it does (a network add-on was
// installed), without a restart; each pod keeps, and is torn down on, the
// network it was set up on, also after a restart.
func TestAutoModeFollowsTheConfDir(t *testing.T) {
	e := cniEnv(t)
	e.cfg.Mode = config.NetworkAuto
	m := e.manager()
	if mode, why := m.Mode(); mode != config.NetworkBuiltin || !strings.Contains(why, "no CNI configuration") {
		t.Errorf("Mode with an empty conf dir = %s (%s)", mode, why)
	}
	if ok, reason, msg := m.Ready(context.Background()); !ok {
		t.Fatalf("Ready = false, %s: %s", reason, msg)
	}
	nsA, resA := e.pod(m, "auto-a")
	if !strings.HasPrefix(resA.IPs[0].String(), "10.123.0.") {
		t.Fatalf("pod without a CNI configuration got %v, want the built-in subnet", resA.IPs)
	}
	e.writeConflist("10-addon.conflist", "crcni0", "10.126.0.0/24")
	if mode, _ := m.Mode(); mode != config.NetworkCNI {
		t.Errorf("Mode with a configuration = %s", mode)
	}
	nsB, resB := e.pod(m, "auto-b")
	if !strings.HasPrefix(resB.IPs[0].String(), "10.126.0.") {
		t.Fatalf("pod after the add-on came got %v, want the CNI subnet", resB.IPs)
	}
	echoServer(t, nsA, ":8080")
	echo(t, nsA, net.JoinHostPort(resA.IPs[0].String(), "8080"))
	_ = nsB

	// A restart with the configuration present still tears the built-in
	// pod down on the built-in network.
	m2 := e.manager()
	if err := m2.Reconcile(context.Background(), []string{"auto-a", "auto-b"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"auto-a", "auto-b"} {
		e.remove(m2, id)
	}
	assertNoCNILeaks(t, e)
	if got := e.snapshot(); len(got.Veths) != 0 || len(got.Leases) != 0 || len(got.Records) != 0 {
		t.Errorf("left after teardown: %+v", got)
	}
}
