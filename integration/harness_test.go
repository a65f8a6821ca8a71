// Package integration drives the real cradle binary over its CRI socket
// with the cri-api gRPC client, as root.
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cradleBin is the binary under test, built once by TestMain.
var cradleBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cradle-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cradleBin = filepath.Join(dir, "cradle")
	// As make build makes it: static, with the microVM guest agent inside.
	build := exec.Command("make", "-C", "..", "build", "BIN="+cradleBin)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cradle:", err)
		os.Exit(1)
	}
	before := map[string]bool{}
	for _, cg := range podCgroups() {
		before[cg] = true
	}
	code := m.Run()
	// Each test checks the pod cgroups made while its daemon ran; this
	// catches those a test that does not check left behind.
	for _, cg := range podCgroups() {
		if !before[cg] {
			fmt.Fprintln(os.Stderr, "FAIL: a test left pod cgroup", cg)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one cradle serve process and its CRI clients.
type daemon struct {
	t       testing.TB
	dir     string
	config  string
	Root    string
	Socket  string
	Bridge  string // its pod network: testBridge/testSubnet unless newDaemonNet
	Subnet  string
	Preload string   // the bake-in directory
	env     []string // extra environment for the daemon
	netns   string   // the network namespace it runs in ("": the test's)
	cmd     *exec.Cmd
	logs    *testutil.Buffer // this instance's output
	earlier string           // the output of the instances before it (restarts)
	cgroups map[string]bool  // pod cgroups on the host before the daemon first started
	exited  chan struct{}
	conn    *grpc.ClientConn
	Runtime runtime.RuntimeServiceClient
	Images  runtime.ImageServiceClient
}

// newDaemon writes a config under a fresh directory (extra is appended to
// it) and starts cradle. The daemon is stopped, and checked for leaks, when
// the test ends.
func newDaemon(t testing.TB, extra string) *daemon {
	t.Helper()
	testutil.RequireRoot(t)
	return newDaemonIn(t, t.TempDir(), extra)
}

// newDaemonIn is newDaemon under dir, which the caller removes.
func newDaemonIn(t testing.TB, dir, extra string) *daemon {
	t.Helper()
	return newDaemonNet(t, dir, testBridge, testSubnet, extra)
}

// newDaemonNet is newDaemonIn with the pod network on bridge and subnet
// (testBridge2/testSubnet2 for a second daemon beside the first).
func newDaemonNet(t testing.TB, dir, bridge, subnet, extra string) *daemon {
	t.Helper()
	return newDaemonNetNS(t, dir, "", bridge, subnet, "", extra)
}

// newDaemonNetNS is newDaemonNet with the daemon in the network namespace
// at netns (a node of its own: its pod network is made there) and netExtra
// added to its [network] section.
func newDaemonNetNS(t testing.TB, dir, netns, bridge, subnet, netExtra, extra string) *daemon {
	t.Helper()
	testutil.RequireRoot(t)
	d := &daemon{t: t, dir: dir, Root: filepath.Join(dir, "root"), Socket: filepath.Join(dir, "run", "cradle.sock"),
		Bridge: bridge, Subnet: subnet, Preload: filepath.Join(dir, "preload"), netns: netns}
	d.config = filepath.Join(dir, "cradle.toml")
	cfg := fmt.Sprintf("root = %q\nstate = %q\n[grpc]\nsocket = %q\n[log]\nlevel = \"debug\"\n[metrics]\naddress = \"127.0.0.1:0\"\n[network]\nbridge = %q\nsubnet = %q\n%s[images]\nregistry_config_dir = %q\npreload_dir = %q\n%s",
		d.Root, filepath.Join(dir, "run"), d.Socket, bridge, subnet, netExtra,
		filepath.Join(dir, "certs.d"), filepath.Join(dir, "preload"), extra)
	if err := os.WriteFile(d.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cgroups = map[string]bool{}
	for _, cg := range podCgroups() {
		d.cgroups[cg] = true
	}
	d.Start()
	t.Cleanup(func() {
		d.Stop()
		removeTestNetwork(t, bridge)
		testutil.AssertNoMounts(t, dir)
		if t.Failed() {
			t.Logf("daemon log:\n%s%s", d.earlier, d.logs.String())
		}
	})
	return d
}

// Start runs the daemon and waits until its socket answers.
func (d *daemon) Start() {
	d.t.Helper()
	if d.logs != nil {
		d.earlier += d.logs.String() + "--- the daemon starts again ---\n"
	}
	d.logs = &testutil.Buffer{}
	d.cmd = exec.Command(cradleBin, "serve", "--config", d.config)
	if d.netns != "" {
		d.cmd = exec.Command("nsenter", "--net="+d.netns, "--", cradleBin, "serve", "--config", d.config)
	}
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.cmd.Env = append(os.Environ(), d.env...)
	// An fd the daemon inherits, as from a starter that held a lock: the
	// processes it starts must not keep it (inheritedMarker).
	if f, err := os.OpenFile(filepath.Join(d.dir, inheritedMarker), os.O_CREATE|os.O_RDONLY, 0o600); err == nil {
		d.cmd.ExtraFiles = []*os.File{f}
		defer f.Close()
	}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.t.Fatal(err)
	}
	d.conn, d.Runtime, d.Images = conn, runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.Runtime.Version(ctx, &runtime.VersionRequest{})
		cancel()
		if err == nil {
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("cradle exited during start-up: %v\n%s", d.cmd.ProcessState, d.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("cradle did not answer on %s: %v\n%s", d.Socket, err, d.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *daemon) Stop() {
	d.t.Helper()
	if d.cmd == nil {
		return
	}
	d.conn.Close()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("cradle did not stop on SIGTERM within 30s")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 && !d.killed() {
		d.t.Errorf("cradle exited with %d after SIGTERM", code)
	}
	testutil.AssertNoProcess(d.t, d.cmd.Process.Pid)
	d.cmd = nil
}

func (d *daemon) killed() bool {
	ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// Kill9 kills the daemon the way a crash does.
func (d *daemon) Kill9() {
	d.t.Helper()
	d.conn.Close()
	_ = d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}

func (d *daemon) Logs() string { return d.logs.String() }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func contains(haystack, needle string) bool { return strings.Contains(haystack, needle) }

// The daemons under test build their pod network on a bridge and subnet of
// their own, which removeTestNetwork takes away again (a real node keeps
// its bridge and nftables table across restarts). A test that runs two
// daemons side by side gives the second testBridge2 and testSubnet2.
const (
	testBridge  = "crtest0"
	testSubnet  = "10.231.0.0/24"
	testBridge2 = "crtest1"
	testSubnet2 = "10.231.1.0/24"
)

// removeTestNetwork removes bridge and its daemon's nftables table, and
// the table older versions shared.
func removeTestNetwork(t testing.TB, bridge string) {
	t.Helper()
	if l, err := netlink.LinkByName(bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Errorf("remove test bridge: %v", err)
		}
	}
	c, err := nftables.New()
	if err != nil {
		t.Errorf("nftables: %v", err)
		return
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Errorf("list nftables tables: %v", err)
		return
	}
	for _, tb := range tables {
		if tb.Name == "cradle" || tb.Name == network.TableName(bridge) {
			c.DelTable(tb)
		}
	}
	if err := c.Flush(); err != nil {
		t.Errorf("remove nftables table: %v", err)
	}
}

// inheritedMarker is the file whose fd every test daemon inherits as fd 3.
const inheritedMarker = "inherited-fd"

// assertNotInherited fails if pid holds the daemon's inherited fd.
func assertNotInherited(t testing.TB, d *daemon, pid int) {
	t.Helper()
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if l, _ := os.Readlink(fd); l == filepath.Join(d.dir, inheritedMarker) {
			t.Errorf("process %d holds the daemon's inherited fd (%s)", pid, fd)
		}
	}
}
