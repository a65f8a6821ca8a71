package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/reference"
)

// Validate checks c without touching the system. All problems are reported
// at once, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Version != SchemaVersion {
		bad("version", "unsupported schema version %d (this build reads %d)", c.Version, SchemaVersion)
	}
	for key, p := range map[string]string{
		"root": c.Root, "state": c.State, "grpc.socket": c.GRPC.Socket,
		"images.registry_config_dir": c.Images.RegistryConfigDir, "images.preload_dir": c.Images.PreloadDir,
	} {
		if !filepath.IsAbs(p) {
			bad(key, "%q is not an absolute path", p)
		}
	}
	if c.GRPC.MaxRecvMiB < 1 || c.GRPC.MaxSendMiB < 1 {
		bad("grpc", "message size limits must be at least 1 MiB")
	}
	if err := CheckLogLevel(c.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if a := c.Metrics.Address; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("metrics.address", "%q is not host:port: %v", a, err)
		}
	}
	if err := c.Debug.validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Streaming.validate()...)
	errs = append(errs, c.Images.validate()...)
	errs = append(errs, c.Runtime.validate()...)
	errs = append(errs, c.Network.validate()...)
	errs = append(errs, c.NRI.validate()...)
	return errors.Join(errs...)
}

// CheckLogLevel checks a log level as log.level (and --log-level) take it.
func CheckLogLevel(l string) error {
	switch l {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("%q is not one of debug, info, warn, error", l)
}

func (im Images) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("images.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if im.Snapshotter != "overlayfs" {
		bad("snapshotter", "%q is not supported (overlayfs)", im.Snapshotter)
	}
	if im.MaxConcurrentDownloads < 1 {
		bad("max_concurrent_downloads", "must be at least 1")
	}
	for key, d := range map[string]Duration{
		"dial_timeout": im.DialTimeout, "response_header_timeout": im.ResponseHeaderTimeout,
		"pull_progress_timeout": im.PullProgressTimeout,
	} {
		if d <= 0 {
			bad(key, "must be positive")
		}
	}
	if _, err := reference.ParseDockerRef(im.SandboxImage); err != nil {
		bad("sandbox_image", "%q: %v", im.SandboxImage, err)
	}
	for _, p := range im.Pinned {
		if _, err := reference.ParseDockerRef(p); err != nil {
			bad("pinned", "%q: %v", p, err)
		}
	}
	return errs
}

func (r Runtime) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("runtime.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch r.CgroupDriver {
	case CgroupDriverAuto, CgroupDriverCgroupfs, CgroupDriverSystemd:
	default:
		bad("cgroup_driver", "%q is not one of auto, cgroupfs, systemd", r.CgroupDriver)
	}
	if r.Conmon == "" || strings.ContainsAny(r.Conmon, " \t\n") {
		bad("conmon", "%q is not a binary path or name", r.Conmon)
	}
	if r.EventBuffer < 1 {
		bad("event_buffer", "%d must be at least 1", r.EventBuffer)
	}
	if !strings.HasPrefix(r.CgroupRoot, "/") || path.Clean(r.CgroupRoot) != r.CgroupRoot || r.CgroupRoot == "/" {
		bad("cgroup_root", "%q must be an absolute, clean cgroup path below the root", r.CgroupRoot)
	}
	if _, ok := r.Handlers[r.DefaultHandler]; !ok && r.DefaultHandler != DefaultHandlerAuto {
		bad("default_handler", "%q is not a configured handler (nor %q)", r.DefaultHandler, DefaultHandlerAuto)
	}
	names := make([]string, 0, len(r.Handlers))
	for n := range r.Handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := r.Handlers[n]
		if n == "" {
			bad("handlers", "a handler has an empty name")
		}
		switch h.Kind {
		case KindOCI:
			if h.Binary == "" {
				bad("handlers."+n+".binary", "an oci handler needs a runtime binary")
			}
			if h.VM != nil {
				bad("handlers."+n+".vm", "only vm handlers take a vm section")
			}
		case KindVM:
			if h.Binary == "" {
				bad("handlers."+n+".binary", "a vm handler needs a VMM binary")
			}
			if h.VM == nil {
				bad("handlers."+n+".vm", "a vm handler needs a vm section")
				continue
			}
			for _, e := range h.VM.validate() {
				errs = append(errs, fmt.Errorf("runtime.handlers.%s.vm.%w", n, e))
			}
		default:
			bad("handlers."+n+".kind", "%q is not a known handler kind (oci, vm)", h.Kind)
		}
	}
	return errs
}

// Bounds of a pod VM's size: microvm's limits, and the least memory the
// guest kernel with cradle's initramfs boots in.
const (
	maxVMVCPUs     = 255
	minVMMemoryMiB = 128
	maxVMMemoryMiB = 1 << 20
)

func (v VM) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if v.Kernel != "" && !filepath.IsAbs(v.Kernel) {
		bad("kernel", "%q is not an absolute path", v.Kernel)
	}
	if v.VCPUs < 1 || v.VCPUs > maxVMVCPUs {
		bad("vcpus", "%d is outside 1..%d", v.VCPUs, maxVMVCPUs)
	}
	if v.MemoryMiB < minVMMemoryMiB || v.MemoryMiB > maxVMMemoryMiB {
		bad("memory_mib", "%d is outside %d..%d", v.MemoryMiB, minVMMemoryMiB, maxVMMemoryMiB)
	}
	switch v.Accel {
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		bad("accel", "%q is not one of auto, kvm, tcg", v.Accel)
	}
	return errs
}

func (n Network) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("network.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch n.Mode {
	case NetworkBuiltin, NetworkCNI, NetworkAuto:
	default:
		bad("mode", "%q is not one of auto, builtin, cni", n.Mode)
	}
	if n.Bridge == "" || len(n.Bridge) > 15 || strings.ContainsAny(n.Bridge, "/ \t\n:") {
		bad("bridge", "%q is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)", n.Bridge)
	}
	v4, err := netip.ParsePrefix(n.Subnet)
	switch {
	case err != nil:
		bad("subnet", "%q: %v", n.Subnet, err)
	case !v4.Addr().Is4():
		bad("subnet", "%q is not an IPv4 subnet", n.Subnet)
	case v4.Masked() != v4:
		bad("subnet", "%q has host bits set (did you mean %s?)", n.Subnet, v4.Masked())
	case v4.Bits() > 30:
		bad("subnet", "%q is too small: a pod subnet needs at least a /30", n.Subnet)
	}
	if n.SubnetV6 != "" {
		v6, err := netip.ParsePrefix(n.SubnetV6)
		switch {
		case err != nil:
			bad("subnet_v6", "%q: %v", n.SubnetV6, err)
		case !v6.Addr().Is6() || v6.Addr().Is4In6():
			bad("subnet_v6", "%q is not an IPv6 subnet", n.SubnetV6)
		case v6.Masked() != v6:
			bad("subnet_v6", "%q has host bits set (did you mean %s?)", n.SubnetV6, v6.Masked())
		case v6.Bits() > 126:
			bad("subnet_v6", "%q is too small: a pod subnet needs at least a /126", n.SubnetV6)
		}
	}
	if n.MTU < 576 || n.MTU > 65535 {
		bad("mtu", "%d is outside 576..65535", n.MTU)
	}
	if !filepath.IsAbs(n.CNIConfDir) {
		bad("cni_conf_dir", "%q is not an absolute path", n.CNIConfDir)
	}
	if (n.Mode == NetworkCNI || n.Mode == NetworkAuto) && len(n.CNIBinDirs) == 0 {
		bad("cni_bin_dirs", "%s mode needs at least one plugin directory", n.Mode)
	}
	for _, d := range n.CNIBinDirs {
		if !filepath.IsAbs(d) {
			bad("cni_bin_dirs", "%q is not an absolute path", d)
		}
	}
	return errs
}

// validate refuses a debug address that is not loopback: pprof shows the
// daemon's memory, and anyone who can reach it can profile the daemon.
func (d Debug) validate() error {
	if d.Address == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(d.Address)
	if err != nil {
		return fmt.Errorf("debug.address: %q is not host:port: %v", d.Address, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("debug.address: %q: port %q is not 0..65535", d.Address, port)
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("debug.address: %q is not a loopback address (127.0.0.1, [::1] or localhost): "+
			"the debug endpoint serves the daemon's memory to whoever reaches it", d.Address)
	}
	return nil
}

func (s Streaming) validate() []error {
	var errs []error
	host, port, err := net.SplitHostPort(s.Address)
	if err != nil {
		errs = append(errs, fmt.Errorf("streaming.address: %q is not host:port: %v", s.Address, err))
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil || host == "" {
		errs = append(errs, fmt.Errorf("streaming.address: %q needs a host (an empty one would listen on every address) and a port 0..65535", s.Address))
	}
	if s.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("streaming.idle_timeout: must be positive"))
	}
	return errs
}

func (n NRI) validate() []error {
	if !n.Enable {
		return nil
	}
	var errs []error
	for key, p := range map[string]string{"nri.socket_path": n.SocketPath, "nri.plugin_config_path": n.PluginConfigPath} {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s: %q is not an absolute path", key, p))
		}
	}
	if n.PluginPath != "" && !filepath.IsAbs(n.PluginPath) {
		errs = append(errs, fmt.Errorf("nri.plugin_path: %q is not an absolute path", n.PluginPath))
	}
	if n.RegistrationTimeout <= 0 || n.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("nri: registration_timeout and request_timeout must be positive"))
	}
	return errs
}
