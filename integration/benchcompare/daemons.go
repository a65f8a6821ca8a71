package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Each daemon gets a pod network of its own on this machine.
const (
	cradleBridge     = "crbench0"
	cradleSubnet     = "10.235.0.0/24"
	containerdBridge = "crbenchctd0"
	containerdSubnet = "10.235.1.0/24"
)

// daemon is one runtime's process, its CRI client and how to find the
// processes it runs beside the pods' containers.
type daemon struct {
	name    string
	dir     string
	socket  string
	cmd     *exec.Cmd
	logf    *os.File
	exited  chan struct{}
	conn    *grpc.ClientConn
	rt      runtime.RuntimeServiceClient
	img     runtime.ImageServiceClient
	podProc func() []int // the per-pod processes the runtime adds
	undo    func()       // removes what it made on the host outside dir
}

func startDaemon(ctx context.Context, o options, reg *registry, name, dir string) (*daemon, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	switch name {
	case "cradle":
		return startCradle(ctx, o, reg, dir)
	case "containerd":
		return startContainerd(ctx, o, reg, dir)
	}
	return nil, fmt.Errorf("unknown runtime %q", name)
}

// cradleHandler is the [runtime] part of cradle's configuration that picks
// its handler: its built-in handlers and default (auto: crun where
// installed, else runc) unless -cradle-oci names a runtime.
func cradleHandler(o options) string {
	if o.cradleOCI == "" {
		return ""
	}
	return fmt.Sprintf("default_handler = 'oci'\n[runtime.handlers.oci]\nkind = 'oci'\nbinary = %q", o.cradleOCI)
}

func startCradle(ctx context.Context, o options, reg *registry, dir string) (*daemon, error) {
	d := &daemon{name: "cradle", dir: dir, socket: filepath.Join(dir, "run", "cradle.sock")}
	cfg := fmt.Sprintf(`root = %q
state = %q
[grpc]
socket = %q
[metrics]
address = ''
[debug]
address = %q
[images]
registry_config_dir = %q
preload_dir = %q
[runtime]
cgroup_root = '/cradle-bench'
%s
[network]
mode = 'builtin'
bridge = %q
subnet = %q
masquerade = false
cni_conf_dir = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "run"), d.socket, o.cradleDebug, reg.certsD,
		filepath.Join(dir, "preload"), cradleHandler(o), cradleBridge, cradleSubnet, filepath.Join(dir, "cni"))
	conf := filepath.Join(dir, "cradle.toml")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(o.cradle, "serve", "--config", conf)
	d.podProc = func() []int {
		return findProcs(func(p proc) bool {
			monitor := p.comm == "conmon" && strings.Contains(p.cmdline, dir)
			infra := strings.Contains(p.cmdline, dir) && strings.HasSuffix(p.exe, "/pause")
			return monitor || infra
		})
	}
	d.undo = func() { removeNetwork(cradleBridge, true) }
	return d, d.start(ctx)
}

func startContainerd(ctx context.Context, o options, reg *registry, dir string) (*daemon, error) {
	d := &daemon{name: "containerd", dir: dir, socket: filepath.Join(dir, "containerd.sock")}
	cniDir := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		return nil, err
	}
	conflist := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "crbench", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
`, containerdBridge, filepath.Join(dir, "ipam"), containerdSubnet)
	if err := os.WriteFile(filepath.Join(cniDir, "10-crbench.conflist"), []byte(conflist), 0o644); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = %q
[metrics]
  address = ""
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = %q
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %q
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = %q
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = %q
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.socket, d.socket+".ttrpc",
		filepath.Join(dir, "debug.sock"), filepath.Join(dir, "opt"), pauseRef, reg.certsD, o.runc, cniDir)
	conf := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(o.containerd, "--config", conf)
	// The shim is found on PATH: the one built beside containerd.
	d.cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(o.containerd)+":"+os.Getenv("PATH"))
	d.podProc = func() []int {
		shims := findProcs(func(p proc) bool {
			return p.comm == "containerd-shim" && strings.Contains(p.cmdline, d.socket)
		})
		isShim := map[int]bool{}
		for _, s := range shims {
			isShim[s] = true
		}
		pauses := findProcs(func(p proc) bool { return isShim[p.ppid] && strings.HasSuffix(p.exe, "/pause") })
		return append(shims, pauses...)
	}
	d.undo = func() { removeNetwork(containerdBridge, false) }
	return d, d.start(ctx)
}

func (d *daemon) start(ctx context.Context) error {
	var err error
	if d.logf, err = os.Create(filepath.Join(d.dir, d.name+".log")); err != nil {
		return err
	}
	d.cmd.Stdout, d.cmd.Stderr = d.logf, d.logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.exited = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	if d.conn, err = grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	d.rt, d.img = runtime.NewRuntimeServiceClient(d.conn), runtime.NewImageServiceClient(d.conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := d.rt.Version(cctx, &runtime.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited during start-up (log %s)", d.name, d.logf.Name())
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return fmt.Errorf("%s did not answer on %s: %v", d.name, d.socket, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the daemon with SIGTERM (SIGKILL after 30 s) and removes its
// network from the host.
func (d *daemon) stop() {
	if d.conn != nil {
		_ = d.conn.Close()
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		log.Printf("%s did not stop on SIGTERM; killing pid %d", d.name, d.cmd.Process.Pid)
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	d.logf.Close()
	d.undo()
}

// removeNetwork deletes a bridge and, for cradle, its nftables table.
func removeNetwork(bridge string, table bool) {
	if l, err := netlink.LinkByName(bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			log.Printf("remove bridge %s: %v", bridge, err)
		}
	}
	if !table {
		return
	}
	c, err := nftables.New()
	if err != nil {
		return
	}
	tables, _ := c.ListTablesOfFamily(nftables.TableFamilyINet)
	for _, tb := range tables {
		if tb.Name == network.TableName(bridge) {
			c.DelTable(tb)
		}
	}
	_ = c.Flush()
}

// cgroupTops are the cgroups the runtimes make their pods' under: cradle's
// cgroup_root and containerd's default parent (its namespace's name).
var cgroupTops = []string{"cradle-bench", "k8s.io"}

// newCgroupTops lists those of cgroupTops that do not exist yet, in every
// hierarchy, so that removeCgroups takes away only what the run made.
func newCgroupTops() []string {
	var out []string
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		for _, top := range cgroupTops {
			if _, err := os.Stat(filepath.Join(h, top)); os.IsNotExist(err) {
				out = append(out, filepath.Join(h, top))
			}
		}
	}
	return out
}

// removeCgroups removes the empty cgroup trees at dirs, deepest first; a
// cgroup that still holds a process stays (and is reported).
func removeCgroups(dirs []string) {
	for _, dir := range dirs {
		var tree []string
		_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				tree = append(tree, p)
			}
			return nil
		})
		for i := len(tree) - 1; i >= 0; i-- {
			if err := os.Remove(tree[i]); err != nil {
				log.Printf("cgroup left behind: %v", err)
			}
		}
	}
}
