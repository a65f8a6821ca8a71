package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// PodNetwork is what Setup needs to know about a pod.
type PodNetwork struct {
	PodID, Name, Namespace string
	// NetNSPath is the pod's network namespace (NewNetNS); unused when
	// HostNetwork is set.
	NetNSPath    string
	PortMappings []PortMapping
	HostNetwork  bool
}

// PortMapping is one hostPort: HostIP:HostPort on the host reaches
// ContainerPort on the pod's address. An empty HostIP means every host
// address; HostPort 0 means no mapping.
type PortMapping struct {
	Protocol      string `json:"protocol"` // tcp or udp
	ContainerPort int32  `json:"container_port"`
	HostPort      int32  `json:"host_port"`
	HostIP        string `json:"host_ip,omitempty"`
}

// Result is what a pod got.
type Result struct {
	IPs       []net.IP
	Interface string
	Gateway   net.IP
	MTU       int
}

// Option adjusts a Manager.
type Option func(*options)

type options struct {
	hostNetNS string
}

// WithHostNetNS makes the Manager treat the network namespace at path as
// "the host": the bridge, host veth ends, nftables table and hostPort
// checks live there. The default is the daemon's own namespace. Tests use
// it to keep everything inside a namespace they created.
func WithHostNetNS(path string) Option { return func(o *options) { o.hostNetNS = path } }

// Manager wires pods into the configured network. Setup, Teardown and
// Reconcile are serialised by one mutex: the built-in network's host-side
// steps take a few milliseconds, and serialising them keeps hostPort and
// lease checks exact.
type Manager struct {
	mode      string
	log       *slog.Logger
	hostPath  string
	hostNS    netns.NsHandle
	host      *netlink.Handle
	netnsDir  string
	recs      records
	mu        sync.Mutex
	builtin   *builtinNet // mode builtin; in auto mode made when first needed (bmu)
	cni       *cniNet     // modes cni and auto
	closeOnce sync.Once

	// auto mode: what the built-in network is made from when first needed.
	cfg     config.Network
	root    string
	bmu     sync.Mutex
	podCIDR string // kubelet's pod CIDR, sent before the built-in network was made

	// failAt, when set by a test, is called after each named Setup step;
	// an error makes that step fail (rollback tests).
	failAt func(step string) error
}

// New opens the network of cfg. root holds what survives a reboot (leases
// are kept in a tmpfs-free place on purpose: a lease outliving a reboot is
// reclaimed by Reconcile), state what does not (netns mounts, records).
// In builtin mode it refuses a pod subnet that overlaps a host route and
// creates the bridge and nftables table.
func New(ctx context.Context, cfg config.Network, root, state string, log *slog.Logger, opts ...Option) (*Manager, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.hostNetNS == "" {
		o.hostNetNS = "/proc/self/ns/net"
	}
	m := &Manager{
		mode:     cfg.Mode,
		cfg:      cfg,
		root:     root,
		log:      log,
		hostPath: o.hostNetNS,
		netnsDir: filepath.Join(state, "netns"),
		recs:     records{dir: filepath.Join(state, "network", "pods")},
	}
	for _, d := range []string{m.netnsDir, m.recs.dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	var err error
	if m.hostNS, err = netns.GetFromPath(o.hostNetNS); err != nil {
		return nil, fmt.Errorf("open host netns %s: %w", o.hostNetNS, err)
	}
	if m.host, err = netlink.NewHandleAt(m.hostNS); err != nil {
		_ = m.hostNS.Close()
		return nil, fmt.Errorf("netlink in host netns: %w", err)
	}
	switch cfg.Mode {
	case config.NetworkBuiltin:
		m.builtin, err = newBuiltin(ctx, m, cfg, root)
	case config.NetworkCNI:
		m.cni, err = newCNI(cfg, filepath.Join(state, "network", "cni-cache"))
	case config.NetworkAuto:
		if m.cni, err = newCNI(cfg, filepath.Join(state, "network", "cni-cache")); err != nil {
			break
		}
		// Made now when pods will need it: no CNI configuration, or pods of
		// an earlier start on it (their teardown and sweep need it).
		if !m.cni.present() || m.recs.anyMode(config.NetworkBuiltin) {
			err = m.ensureBuiltin(ctx)
		}
		mode, why := m.Mode()
		log.InfoContext(ctx, "network mode auto", "in_use", mode, "why", why)
	default:
		err = fmt.Errorf("network mode %q: %w", cfg.Mode, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

// Close releases the Manager's handles; the network itself stays.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.host.Close()
		_ = m.hostNS.Close()
	})
	return nil
}

// NetNSDir is where the engine should create pod namespaces
// (NewNetNS(m.NetNSDir(), podID)); Reconcile removes those of dead pods.
func (m *Manager) NetNSDir() string { return m.netnsDir }

// Setup wires pod into the network. It is idempotent: a pod already set up
// gets its result again; a pod whose earlier Setup was interrupted is torn
// down and set up afresh. On failure nothing is left behind.
func (m *Manager) Setup(ctx context.Context, pod PodNetwork) (Result, error) {
	if err := validatePod(pod); err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, err := m.recs.load(pod.PodID)
	if err != nil {
		return Result{}, err
	}
	if prev != nil && prev.Complete {
		return resultOf(prev), nil
	}
	if prev != nil {
		m.log.InfoContext(ctx, "finishing interrupted network setup before retrying", "pod", pod.PodID)
		if err := m.teardown(ctx, prev); err != nil {
			return Result{}, err
		}
	}
	mode, _ := m.Mode()
	rec := &record{PodID: pod.PodID, Name: pod.Name, Namespace: pod.Namespace, Mode: mode, HostNetwork: pod.HostNetwork, NetNSPath: pod.NetNSPath, PortMappings: pod.PortMappings}
	if pod.HostNetwork {
		rec.Complete = true
		return Result{}, m.recs.save(rec)
	}
	if mode == config.NetworkBuiltin {
		if err := m.ensureBuiltin(ctx); err != nil {
			return Result{}, err
		}
		rec.Veth = vethName(pod.PodID)
		rec.MTU = m.builtin.mtu
	}
	if err := m.recs.save(rec); err != nil {
		return Result{}, err
	}
	var u cleanup.Stack
	done := false
	defer func() {
		if !done {
			m.rollback(ctx, pod.PodID, &u)
		}
	}()
	if err := m.step("record"); err != nil {
		return Result{}, err
	}
	if mode == config.NetworkBuiltin {
		err = m.builtin.setup(ctx, pod, rec, &u)
	} else {
		err = m.cni.setup(ctx, m, pod, rec, &u)
	}
	if err != nil {
		return Result{}, fmt.Errorf("set up network of pod %s: %w", pod.PodID, err)
	}
	rec.Complete = true
	if err := m.recs.save(rec); err != nil {
		return Result{}, err
	}
	u.Release()
	done = true
	return resultOf(rec), nil
}

// rollback unwinds a failed Setup. The record goes last, and only when
// every undo succeeded: otherwise it stays, and Teardown or Reconcile
// finishes the job (the pod is in an unknown state until then).
func (m *Manager) rollback(ctx context.Context, podID string, u *cleanup.Stack) {
	if err := u.Run(); err != nil {
		m.log.ErrorContext(ctx, "network setup rollback incomplete; left for Teardown/Reconcile", "pod", podID, "error", err)
		return
	}
	if err := m.recs.remove(podID); err != nil {
		m.log.ErrorContext(ctx, "remove network record after rollback", "pod", podID, "error", err)
	}
}

// Teardown removes everything Setup made for podID, from the persisted
// record alone. A pod with no record, or torn down already, is fine.
func (m *Manager) Teardown(ctx context.Context, podID string) error {
	if err := validID(podID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, err := m.recs.load(podID)
	if err != nil {
		return err
	}
	if rec == nil {
		// Setup persists the record before acting, so there is nothing to
		// undo but what a previous partial teardown may have left.
		mode, _ := m.Mode()
		rec = &record{PodID: podID, Mode: mode}
		if mode == config.NetworkBuiltin && m.builtin != nil {
			rec.Veth = vethName(podID)
		}
	}
	return m.teardown(ctx, rec)
}

// teardown removes rec's resources, then the record. Each step tolerates
// resources that are already gone.
func (m *Manager) teardown(ctx context.Context, rec *record) error {
	if !rec.HostNetwork {
		var err error
		switch {
		case rec.Mode == config.NetworkCNI && m.cni != nil:
			err = m.cni.teardown(ctx, m, rec)
		case rec.Mode == config.NetworkBuiltin && m.mode == config.NetworkAuto:
			if err = m.ensureBuiltin(ctx); err == nil {
				err = m.builtin.teardown(ctx, rec)
			}
		case rec.Mode == config.NetworkBuiltin && m.builtin != nil:
			err = m.builtin.teardown(ctx, rec)
		default:
			err = fmt.Errorf("pod was set up in %s mode, the daemon now runs %s: %w", rec.Mode, m.mode, errdefs.ErrFailedPrecondition)
		}
		if err != nil {
			return fmt.Errorf("tear down network of pod %s: %w", rec.PodID, err)
		}
	}
	return m.recs.remove(rec.PodID)
}

// Reconcile makes the host match the set of live pods, at start-up: every
// pod with a record that is not live is torn down; then leases, veths,
// hostPort rules and netns files of pods that are not live are removed,
// whether or not a record exists (a crash can leave them behind).
//
// Recovery assumptions: records and leases are written before the
// resources they describe; a veth's host name is derived from its pod ID;
// every hostPort rule is tagged with its pod ID; namespaces live in
// NetNSDir named by pod ID. One pod that cannot be cleaned does not stop
// the others: all errors are returned joined.
func (m *Manager) Reconcile(ctx context.Context, live []string) error {
	alive := make(map[string]bool, len(live))
	for _, id := range live {
		alive[id] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ids, err := m.recs.list()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if alive[id] {
			continue
		}
		rec, err := m.recs.load(id)
		if err == nil && rec != nil {
			err = m.teardown(ctx, rec)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	m.bmu.Lock()
	b := m.builtin
	m.bmu.Unlock()
	if b != nil {
		errs = append(errs, b.sweep(ctx, alive))
	}
	errs = append(errs, m.sweepNetNS(alive))
	return errors.Join(errs...)
}

func (m *Manager) sweepNetNS(alive map[string]bool) error {
	ents, err := os.ReadDir(m.netnsDir)
	if err != nil {
		return fmt.Errorf("list netns directory: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if !alive[e.Name()] {
			errs = append(errs, RemoveNetNS(filepath.Join(m.netnsDir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// Ready reports whether pods can be networked now: in builtin mode the
// bridge exists and is up and the nftables table is in place; in CNI mode
// a valid configuration is loaded from the conf dir.
func (m *Manager) Ready(ctx context.Context) (ok bool, reason, message string) {
	var err error
	if mode, _ := m.Mode(); mode == config.NetworkBuiltin {
		if err = m.ensureBuiltin(ctx); err == nil {
			err = m.builtin.ready()
		}
	} else {
		_, err = m.cni.load()
	}
	if err != nil {
		return false, "NetworkPluginNotReady", err.Error()
	}
	return true, "", ""
}

// Mode is the network new pods get, and why: in auto mode the cluster's
// CNI add-on when cni_conf_dir holds a configuration (looked at on every
// pod, so the daemon follows the directory as it changes), the built-in
// network otherwise. Pods keep the network they were set up on.
func (m *Manager) Mode() (mode, why string) {
	switch m.mode {
	case config.NetworkAuto:
		if m.cni.present() {
			return config.NetworkCNI, "auto: " + m.cni.confDir + " holds a CNI configuration"
		}
		return config.NetworkBuiltin, "auto: no CNI configuration in " + m.cni.confDir
	default:
		return m.mode, "configured"
	}
}

// ensureBuiltin makes the built-in network if it is not made yet (auto
// mode makes it when first needed), with the pod CIDR kubelet sent before.
func (m *Manager) ensureBuiltin(ctx context.Context) error {
	m.bmu.Lock()
	defer m.bmu.Unlock()
	if m.builtin != nil {
		return nil
	}
	b, err := newBuiltin(ctx, m, m.cfg, m.root)
	if err != nil {
		return fmt.Errorf("built-in pod network: %w", err)
	}
	if m.podCIDR != "" {
		if err := b.setSubnets(ctx, m.podCIDR); err != nil {
			m.log.WarnContext(ctx, "kubelet's pod CIDR not applied to the built-in network", "cidr", m.podCIDR, "error", err)
		}
	}
	m.builtin = b
	return nil
}

func (m *Manager) step(name string) error {
	if m.failAt == nil {
		return nil
	}
	if err := m.failAt(name); err != nil {
		return fmt.Errorf("step %s: %w", name, err)
	}
	return nil
}

func resultOf(r *record) Result {
	res := Result{Interface: "eth0", MTU: r.MTU, Gateway: net.ParseIP(r.Gateway)}
	if r.HostNetwork {
		return Result{}
	}
	for _, s := range r.IPs {
		res.IPs = append(res.IPs, net.ParseIP(s))
	}
	return res
}

func validatePod(p PodNetwork) error {
	if err := validID(p.PodID); err != nil {
		return err
	}
	if p.HostNetwork {
		return nil
	}
	if !filepath.IsAbs(p.NetNSPath) {
		return fmt.Errorf("pod %s: netns path %q is not absolute: %w", p.PodID, p.NetNSPath, errdefs.ErrInvalidArgument)
	}
	for _, pm := range p.PortMappings {
		if pm.Protocol != "tcp" && pm.Protocol != "udp" {
			return fmt.Errorf("pod %s: port mapping protocol %q is not tcp or udp: %w", p.PodID, pm.Protocol, errdefs.ErrInvalidArgument)
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 || pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return fmt.Errorf("pod %s: port mapping %d→%d out of range: %w", p.PodID, pm.HostPort, pm.ContainerPort, errdefs.ErrInvalidArgument)
		}
		if pm.HostIP != "" {
			if _, err := netip.ParseAddr(pm.HostIP); err != nil {
				return fmt.Errorf("pod %s: host IP %q: %w", p.PodID, pm.HostIP, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}
