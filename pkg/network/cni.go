package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// cniNet wires pods with standard CNI plugins through libcni. The
// configuration is the first *.conflist, *.conf or *.json file of the conf
// dir by name; it is re-read whenever the directory's listing or a file's
// size or time changes, so a new configuration is used without a restart.
// The list a pod was ADDed with is kept in its record, and DEL always runs
// with that one. Plugins run in the host network namespace (WithHostNetNS).
type cniNet struct {
	confDir string
	binDirs []string
	cni     *libcni.CNIConfig

	mu     sync.Mutex
	key    string // identity of the conf dir state that list was read from
	list   *libcni.NetworkConfigList
	loaded error
}

func newCNI(cfg config.Network, cacheDir string) (*cniNet, error) {
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("create CNI cache directory: %w", err)
	}
	return &cniNet{
		confDir: cfg.CNIConfDir,
		binDirs: cfg.CNIBinDirs,
		cni:     libcni.NewCNIConfigWithCacheDir(cfg.CNIBinDirs, cacheDir, nil),
	}, nil
}

// load returns the current configuration list, re-reading the conf dir if
// it changed. A list whose plugins are not all installed is an error.
func (c *cniNet) load() (*libcni.NetworkConfigList, error) {
	files, key, err := c.scan()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Only a good list is cached: after a failure every call looks again,
	// so a plugin installed later is found without touching the conf dir.
	if err == nil && key == c.key && c.list != nil {
		return c.list, nil
	}
	c.key, c.list, c.loaded = key, nil, err
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, f := range files {
		list, err := readConfList(f)
		if err == nil {
			err = c.checkPlugins(list)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		c.list = list
		return list, nil
	}
	c.loaded = fmt.Errorf("no valid CNI network configuration in %s: %w", c.confDir, errors.Join(append(errs, errdefs.ErrFailedPrecondition)...))
	return nil, c.loaded
}

// scan lists the candidate files, sorted, and a key that changes when any
// of them does.
func (c *cniNet) scan() ([]string, string, error) {
	ents, err := os.ReadDir(c.confDir)
	if err != nil {
		return nil, "", fmt.Errorf("read CNI conf dir: %w", err)
	}
	var files []string
	var key strings.Builder
	for _, e := range ents {
		switch filepath.Ext(e.Name()) {
		case ".conflist", ".conf", ".json":
		default:
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		files = append(files, filepath.Join(c.confDir, e.Name()))
		fmt.Fprintf(&key, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	sort.Strings(files)
	return files, key.String(), nil
}

// present says whether the conf dir holds a configuration file (valid or
// not: a broken one is the cluster's, and reported as such).
func (c *cniNet) present() bool {
	files, _, err := c.scan()
	return err == nil && len(files) > 0
}

// HasCNIConfig says whether dir holds a CNI configuration file (what auto
// mode looks at).
func HasCNIConfig(dir string) bool { return (&cniNet{confDir: dir}).present() }

// readConfList reads a conflist, or a single-plugin .conf wrapped as one.
func readConfList(path string) (*libcni.NetworkConfigList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	if _, ok := raw["plugins"]; !ok {
		b, err = json.Marshal(map[string]any{"name": raw["name"], "cniVersion": raw["cniVersion"], "plugins": []any{raw}})
		if err != nil {
			return nil, err
		}
	}
	return libcni.ConfListFromBytes(b)
}

func (c *cniNet) checkPlugins(list *libcni.NetworkConfigList) error {
	if len(list.Plugins) == 0 {
		return errors.New("no plugins")
	}
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, c.binDirs); err != nil {
			return fmt.Errorf("plugin %q: %w", p.Network.Type, err)
		}
	}
	return nil
}

// cniPortMapping is the "portMappings" capability argument.
type cniPortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

func runtimeConf(rec *record, netnsPath string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: rec.PodID,
		NetNS:       netnsPath,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", rec.Namespace},
			{"K8S_POD_NAME", rec.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", rec.PodID},
		},
	}
	pms := []cniPortMapping{}
	for _, pm := range activeMappings(rec.PortMappings) {
		pms = append(pms, cniPortMapping{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: pm.Protocol, HostIP: pm.HostIP})
	}
	rt.CapabilityArgs = map[string]any{"portMappings": pms}
	return rt
}

// setup: persist the list, ADD (undo: DEL), bring lo up, read the result.
func (c *cniNet) setup(ctx context.Context, m *Manager, pod PodNetwork, rec *record, u *cleanup.Stack) error {
	list, err := c.load()
	if err != nil {
		return err
	}
	rec.CNIConfList = list.Bytes
	if err := m.recs.save(rec); err != nil {
		return err
	}
	rt := runtimeConf(rec, pod.NetNSPath)
	u.Push(func(ctx context.Context) error { return c.del(ctx, m, list, rt) })
	var res types.Result
	err = WithNetNS(m.hostPath, func() error {
		var err error
		res, err = c.cni.AddNetworkList(ctx, list, rt)
		return err
	})
	if err != nil {
		return fmt.Errorf("CNI ADD (network %s): %w", list.Name, err)
	}
	if err := m.step("cni-add"); err != nil {
		return err
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return fmt.Errorf("CNI result: %w", err)
	}
	for _, ipc := range r.IPs {
		if ipc.Interface != nil && (*ipc.Interface >= len(r.Interfaces) || r.Interfaces[*ipc.Interface].Sandbox == "") {
			continue // an address of a host-side interface
		}
		rec.IPs = append(rec.IPs, ipc.Address.IP.String())
		if rec.Gateway == "" && ipc.Gateway != nil {
			rec.Gateway = ipc.Gateway.String()
		}
	}
	if len(rec.IPs) == 0 {
		return fmt.Errorf("CNI network %s gave the pod no address: %w", list.Name, errdefs.ErrFailedPrecondition)
	}
	rec.MTU, err = podLoopbackUpAndMTU(pod.NetNSPath)
	return err
}

// podLoopbackUpAndMTU brings the pod's lo up (what the loopback plugin
// does) and returns eth0's MTU.
func podLoopbackUpAndMTU(nsPath string) (int, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return 0, fmt.Errorf("open pod netns: %w", err)
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return 0, fmt.Errorf("netlink in pod netns: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return 0, fmt.Errorf("bring up pod lo: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return 0, fmt.Errorf("pod eth0: %w", err)
	}
	return eth.Attrs().MTU, nil
}

// teardown runs DEL with the list the pod was ADDed with. A pod whose
// record has no list never reached ADD. A vanished netns is passed as ""
// (plugins then clean their host side only), as the CNI spec allows.
func (c *cniNet) teardown(ctx context.Context, m *Manager, rec *record) error {
	if len(rec.CNIConfList) == 0 {
		return nil
	}
	list, err := libcni.ConfListFromBytes(rec.CNIConfList)
	if err != nil {
		return fmt.Errorf("recorded CNI configuration: %w", err)
	}
	nsPath := rec.NetNSPath
	if _, err := os.Stat(nsPath); err != nil {
		nsPath = ""
	}
	return c.del(ctx, m, list, runtimeConf(rec, nsPath))
}

func (c *cniNet) del(ctx context.Context, m *Manager, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	err := WithNetNS(m.hostPath, func() error { return c.cni.DelNetworkList(ctx, list, rt) })
	if err != nil {
		return fmt.Errorf("CNI DEL (network %s): %w", list.Name, err)
	}
	return nil
}
