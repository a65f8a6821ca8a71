// Package kubelet runs a real kubelet (standalone, static pods) against the
// cradle binary and checks what kubelet asks of a runtime, through kubelet's
// own API and the CRI. `make e2e-kubelet` builds kubelet and runs it; plain
// `go test ./...` skips it (CRADLE_E2E_KUBELET unset).
package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The environment `make e2e-kubelet` passes in.
const (
	kubeletEnv  = "CRADLE_E2E_KUBELET"  // the kubelet binary; unset: the test skips
	cradleEnv   = "CRADLE_E2E_CRADLE"   // the cradle binary (default ../../bin/cradle)
	registryEnv = "CRADLE_E2E_REGISTRY" // the conformance registry (default 127.0.0.1:5000)
)

// Fixed names of this test, apart from those of ./integration (same lock).
const (
	nodeName   = "e2e-node"
	bridge     = "crkube0"
	subnet     = "10.234.0.0/24"
	cgroupRoot = "/cradle-e2e-kubelet" // kubelet's cgroupRoot; cradle's own pods go below it too
	// kubelet's ports, all on loopback.
	securePort   = 10350
	readOnlyPort = 10355
	healthzPort  = 10358
)

// env is one cradle and one kubelet under a temporary directory.
type env struct {
	t        *testing.T
	dir      string
	kubelet  *proc
	cradle   *proc
	kubeBin  string
	crBin    string
	registry string
	conn     *grpc.ClientConn
	cri      runtime.RuntimeServiceClient
	images   runtime.ImageServiceClient
}

func (e *env) path(p ...string) string { return filepath.Join(append([]string{e.dir}, p...)...) }

// newEnv prepares the directory tree and the configurations; nothing runs yet.
func newEnv(t *testing.T) *env {
	kubeBin := os.Getenv(kubeletEnv)
	if kubeBin == "" {
		t.Skipf("%s is not set: run `make e2e-kubelet`", kubeletEnv)
	}
	testutil.RequireRoot(t)
	e := &env{t: t, kubeBin: kubeBin, crBin: os.Getenv(cradleEnv), registry: os.Getenv(registryEnv)}
	if e.crBin == "" {
		e.crBin, _ = filepath.Abs("../../bin/cradle")
	}
	if e.registry == "" {
		e.registry = "127.0.0.1:5000"
	}
	// Short: cradle's unix sockets live below it.
	dir, err := os.MkdirTemp("/tmp", "ckube-")
	if err != nil {
		t.Fatal(err)
	}
	e.dir = dir
	for _, d := range []string{"manifests", "kubelet", "pki", "pod-logs", "cwd", "hostdata", "plugins", "certs.d/registry.k8s.io"} {
		if err := os.MkdirAll(e.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.write("certs.d/registry.k8s.io/hosts.toml", fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"http://"+e.registry, "http://"+e.registry))
	e.write("cradle.toml", e.cradleConfig())
	e.write("kubelet.yaml", e.kubeletConfig())
	// kubelet's working directory: its log cleanup must never delete this file (issue 13, item 1).
	e.write("cwd/canary", "kubelet must not delete this\n")
	makeCgroupRoot(t)
	return e
}

func (e *env) write(rel, content string) {
	e.t.Helper()
	if err := os.WriteFile(e.path(rel), []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) socket() string { return e.path("run", "cradle.sock") }

func (e *env) cradleConfig() string {
	return fmt.Sprintf(`root = %q
state = %q
[grpc]
socket = %q
[log]
level = "debug"
[metrics]
address = ""
[images]
registry_config_dir = %q
preload_dir = %q
sandbox_image = "registry.k8s.io/pause:3.10"
[runtime]
cgroup_driver = "cgroupfs"
cgroup_root = %q
[network]
bridge = %q
subnet = %q
`, e.path("root"), e.path("run"), e.socket(), e.path("certs.d"), e.path("preload"), cgroupRoot+"/cri", bridge, subnet)
}

// kubeletConfig: standalone (no API server), cgroupfs, logs rotated at 10 KiB.
func (e *env) kubeletConfig() string {
	ep := "unix://" + e.socket()
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %s
fileCheckFrequency: 1s
syncFrequency: 5s
address: 127.0.0.1
port: %d
readOnlyPort: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: %s
imageServiceEndpoint: %s
runtimeRequestTimeout: 2m
failSwapOn: false
makeIPTablesUtilChains: false
podLogsDir: %s
containerLogMaxSize: 10Ki
containerLogMaxFiles: 3
containerLogMonitorInterval: 3s
volumePluginDir: %s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
featureGates: {PodAndContainerStatsFromCRI: %v}
`, e.path("manifests"), securePort, readOnlyPort, healthzPort, cgroupRoot, ep, ep, e.path("pod-logs"), e.path("plugins"), criStats())
}

// criStats: kubelet takes every stat from the CRI (PodAndContainerStatsFromCRI),
// unless CRADLE_E2E_CRI_STATS=0 (cAdvisor for CPU and memory, kubelet's default).
func criStats() bool { return os.Getenv("CRADLE_E2E_CRI_STATS") != "0" }

// proc is a daemon of the test, its output in a log file.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func (e *env) start(name, dir string, argv ...string) *proc {
	e.t.Helper()
	p := &proc{name: name, log: e.path(name + ".log")}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "==== %s start %s\n", name, time.Now().Format(time.RFC3339Nano))
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Dir, p.cmd.Stdout, p.cmd.Stderr = dir, f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p
}

// stop sends sig and waits up to grace for the exit, then SIGKILL.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	f, err := os.Open(p.log)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// startCradle runs cradle and connects the CRI clients.
func (e *env) startCradle() {
	e.t.Helper()
	e.cradle = e.start("cradle", e.dir, e.crBin, "serve", "--config", e.path("cradle.toml"))
	if e.conn == nil {
		conn, err := grpc.NewClient("unix://"+e.socket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			e.t.Fatal(err)
		}
		e.conn, e.cri, e.images = conn, runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
	}
	err := waitFor(60*time.Second, time.Second, func() error {
		if !e.cradle.alive() {
			return fmt.Errorf("cradle exited: %s", e.cradle.tail(20))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := e.cri.Version(ctx, &runtime.VersionRequest{})
		return err
	})
	if err != nil {
		e.t.Fatalf("cradle did not answer: %v", err)
	}
}

// startKubelet runs kubelet in its own working directory (with the canary).
func (e *env) startKubelet() {
	e.t.Helper()
	e.kubelet = e.start("kubelet", e.path("cwd"), e.kubeBin, "--config", e.path("kubelet.yaml"),
		"--root-dir", e.path("kubelet"), "--cert-dir", e.path("pki"), "--hostname-override", nodeName, "--v=2")
}

// kill9Cradle kills cradle the way a crash does.
func (e *env) kill9Cradle() {
	e.cradle.stop(syscall.SIGKILL, time.Second)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor calls f every interval until it returns nil or timeout passes;
// the error is f's last.
func waitFor(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}
