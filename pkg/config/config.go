// Package config holds cradle's one configuration schema: every default is
// built into the binary (Default), a file only overrides what it names, and
// unknown keys are errors (Load decodes strictly).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// SchemaVersion is the version of the file format this build reads.
const SchemaVersion = 1

// DefaultPath is where `cradle serve` looks for a config file when none is
// named. A missing file at this path means "use the built-in defaults".
const DefaultPath = "/etc/cradle/cradle.toml"

// Config is the whole daemon configuration.
type Config struct {
	Version   int       `toml:"version" comment:"Schema version of this file."`
	Root      string    `toml:"root" comment:"Persistent state: image content, snapshots, metadata. Must be absolute."`
	State     string    `toml:"state" comment:"Runtime state that does not survive a reboot (pids, sockets). Must be absolute."`
	GRPC      GRPC      `toml:"grpc" comment:"The CRI gRPC endpoint that kubelet and crictl connect to."`
	Log       Log       `toml:"log"`
	Metrics   Metrics   `toml:"metrics" comment:"Prometheus metrics of the daemon."`
	Debug     Debug     `toml:"debug" comment:"Debugging aids. Whatever this says, SIGUSR1 writes every goroutine's stack to the log\n(and to <state>/goroutines.txt)."`
	Images    Images    `toml:"images" comment:"The image service: pulls, registries, unpacking."`
	Runtime   Runtime   `toml:"runtime" comment:"Pod runtimes and the cgroup driver."`
	Network   Network   `toml:"network" comment:"Pod networking: the built-in bridge network, or CNI plugins."`
	Streaming Streaming `toml:"streaming" comment:"The exec / attach / port-forward server whose single-use URLs the Exec, Attach and PortForward RPCs\nreturn (kubelet proxies them). Its URLs are the only credential: keep it on loopback."`
	NRI       NRI       `toml:"nri" comment:"Node Resource Interface (github.com/containerd/nri): plugins that see pod and container events and\nadjust containers before they are created (devices, resources, mounts, env). Off by default."`
}

// NRI configures the NRI plugin host.
type NRI struct {
	Enable              bool     `toml:"enable" comment:"Serve NRI plugins."`
	SocketPath          string   `toml:"socket_path" comment:"Unix socket plugins connect to (root only); NRI plugins look for the default."`
	PluginPath          string   `toml:"plugin_path" comment:"Executable plugins cradle starts itself, named NN-name (NN orders them); a missing directory is none."`
	PluginConfigPath    string   `toml:"plugin_config_path" comment:"Configuration drop-ins for those plugins."`
	RegistrationTimeout Duration `toml:"registration_timeout" comment:"Time a plugin has to register."`
	RequestTimeout      Duration `toml:"request_timeout" comment:"Time a plugin has to answer one event; one that does not answer delays pod and container\ncreation by at most this long, and is then disconnected."`
}

// Streaming configures the streaming server.
type Streaming struct {
	Address     string   `toml:"address" comment:"host:port to listen on; port 0 picks a free port at each start."`
	IdleTimeout Duration `toml:"idle_timeout" comment:"A session with no traffic for this long is closed."`
}

// GRPC configures the CRI socket.
type GRPC struct {
	Socket      string `toml:"socket" comment:"Unix socket path; parent directories are created, a stale socket is replaced."`
	SocketGroup string `toml:"socket_group" comment:"Group (name or gid) that owns the socket; empty keeps root's group. The socket mode is 0660."`
	MaxRecvMiB  int    `toml:"max_recv_message_mib" comment:"Largest gRPC message accepted, in MiB."`
	MaxSendMiB  int    `toml:"max_send_message_mib" comment:"Largest gRPC message sent, in MiB."`
}

// Log configures structured logging (log/slog) on standard error.
type Log struct {
	Level  string `toml:"level" comment:"debug, info, warn or error."`
	Format string `toml:"format" comment:"text or json."`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Address string `toml:"address" comment:"host:port serving /metrics; empty turns it off. Keep it on loopback unless a scraper needs more."`
}

// Debug configures the debugging endpoint.
type Debug struct {
	Address string `toml:"address" comment:"host:port on loopback (127.0.0.1, [::1] or localhost) serving Go's net/http/pprof under /debug/pprof/\n(profiles, goroutine stacks, traces); empty turns it off. Other addresses are refused: profiles show memory."`
}

// Images configures the embedded image service.
type Images struct {
	Snapshotter            string   `toml:"snapshotter" comment:"Snapshotter for unpacked layers. Only overlayfs is built in."`
	RegistryConfigDir      string   `toml:"registry_config_dir" comment:"containerd-style certs.d directory: <host>/hosts.toml (mirrors, plain HTTP, TLS, headers) and _default/hosts.toml.\nA registry on localhost or 127.0.0.0/8 is reached over plain HTTP with no configuration."`
	MaxConcurrentDownloads int      `toml:"max_concurrent_downloads" comment:"Blobs fetched at once per pull."`
	DialTimeout            Duration `toml:"dial_timeout" comment:"Time allowed to connect to a registry."`
	ResponseHeaderTimeout  Duration `toml:"response_header_timeout" comment:"Time allowed for a registry to start answering a request."`
	PullProgressTimeout    Duration `toml:"pull_progress_timeout" comment:"A pull that receives no bytes for this long is cancelled."`
	SandboxImage           string   `toml:"sandbox_image" comment:"The pause image: reported pinned, so kubelet's image garbage collection never removes it.\ncradle runs no pause container: a pod's namespaces are pinned by bind mounts, and a pod that\nshares its PID namespace gets a one-page infra process."`
	Pinned                 []string `toml:"pinned" comment:"Images reported pinned, so kubelet's image garbage collection never removes them;\nRemoveImage refuses them (cradle images rm --force removes them)."`
	PreloadDir             string   `toml:"preload_dir" comment:"Bake-in directory: image archives (*.tar: OCI layouts or docker archives) imported at start,\neach once (a changed file is imported again). A missing directory is fine."`
}

// Runtime configures pod runtimes.
type Runtime struct {
	CgroupDriver   string             `toml:"cgroup_driver" comment:"cgroupfs, systemd, or auto (systemd when systemd is PID 1's init, cgroupfs otherwise)."`
	DefaultHandler string             `toml:"default_handler" comment:"Handler used when a pod names no RuntimeClass handler: a handler's name, or auto (crun where it and conmon are installed, runc otherwise)."`
	Conmon         string             `toml:"conmon" comment:"conmon, the monitor oci handlers run each container under: a path, or a name looked up in PATH."`
	CgroupRoot     string             `toml:"cgroup_root" comment:"Parent cgroup of pods that name none (kubelet names one; crictl may not)."`
	EventBuffer    int                `toml:"event_buffer" comment:"Lifecycle events a GetContainerEvents subscriber may fall behind by; one that falls further\nis cut off (its stream ends with ResourceExhausted, and kubelet lists again). The runtime never waits for it."`
	Handlers       map[string]Handler `toml:"handlers" comment:"Runtime handlers by RuntimeClass handler name."`
}

// Network configures pod networking.
type Network struct {
	Mode       string   `toml:"mode" comment:"auto: cni while cni_conf_dir holds a configuration (the cluster's CNI add-on), builtin otherwise;\nlooked at for every new pod, so installing the add-on switches new pods to it.\nbuiltin: a host bridge, veth pairs, file-backed IPAM and nftables, no extra software; pods on\ntwo nodes reach each other only through routes you add.\ncni: standard CNI plugins configured in cni_conf_dir."`
	Bridge     string   `toml:"bridge" comment:"builtin: name of the host bridge (at most 15 characters)."`
	Subnet     string   `toml:"subnet" comment:"builtin: IPv4 pod subnet (CIDR); the first address is the bridge gateway. It must not overlap a host route."`
	SubnetV6   string   `toml:"subnet_v6" comment:"builtin: optional IPv6 pod subnet for dual-stack pods; empty for IPv4 only."`
	MTU        int      `toml:"mtu" comment:"builtin: MTU of the bridge and of every pod interface."`
	Masquerade bool     `toml:"masquerade" comment:"builtin: masquerade traffic from pods to addresses outside the pod subnet (nftables)."`
	CNIConfDir string   `toml:"cni_conf_dir" comment:"cni: directory of network configurations; the first *.conflist/*.conf/*.json by name is used,\nre-read when the directory changes."`
	CNIBinDirs []string `toml:"cni_bin_dirs" comment:"cni: directories searched for plugin binaries, in order."`
}

// Network modes.
const (
	NetworkBuiltin = "builtin"
	NetworkCNI     = "cni"
	NetworkAuto    = "auto"
)

// Handler is one RuntimeClass handler.
type Handler struct {
	Kind   string `toml:"kind" comment:"oci: namespace+cgroup sandboxes run by an OCI runtime binary.\nvm: each pod in its own microVM (QEMU -M microvm), its containers run by cradle's agent inside it."`
	Binary string `toml:"binary" comment:"oci: the OCI runtime binary; vm: the VMM (default /usr/bin/qemu-system-x86_64). A path, or a name looked up in PATH."`
	// VM is set for vm handlers only (Decode fills its defaults).
	VM *VM `toml:"vm,omitempty" comment:"vm handlers: the guest kernel, size and acceleration of pod VMs."`
}

// VM configures the microVMs of a vm handler.
type VM struct {
	Kernel    string `toml:"kernel" comment:"Guest kernel: a bzImage (its uncompressed PVH vmlinux is extracted and cached, it boots faster)\nor a vmlinux. Empty: the minimal kernel make guest-kernel builds into /var/lib/cradle/guest/boot\n(vmlinux-cradle-*) when there, else the newest Debian kernel there (make deps-vm), else of /boot."`
	VCPUs     int    `toml:"vcpus" comment:"vCPUs of a pod VM."`
	MemoryMiB int    `toml:"memory_mib" comment:"Memory of a pod VM, in MiB."`
	Accel     string `toml:"accel" comment:"auto (KVM when /dev/kvm can boot the guest kernel, TCG otherwise), kvm, or tcg."`
	Virtiofsd string `toml:"virtiofsd" comment:"The virtiofs daemon that shares each pod's container roots and volumes with its VM."`
	// GuestRuntime is put into the guest's initramfs with its libraries.
	GuestRuntime string `toml:"guest_runtime" comment:"The OCI runtime binary the guest runs containers with (copied into the VM with its libraries)."`
	// ColdBoot turns VM templates off.
	ColdBoot bool `toml:"cold_boot" comment:"Boot every pod VM from scratch. Off (the default): a pod VM is a copy-on-write clone of a template VM\nof its shape, booted once and saved under the state root (vm/templates), its shared directory on\nvirtio-9p; a template that cannot be built or restored is logged and pods boot cold."`
}

// Handler kinds.
const (
	KindOCI = "oci"
	KindVM  = "vm"
)

// VM handler defaults, filled in by Decode where a vm handler leaves them out.
const (
	DefaultVMM         = "/usr/bin/qemu-system-x86_64"
	DefaultVMVCPUs     = 1
	DefaultVMMemoryMiB = 256
	DefaultVirtiofsd   = "/usr/lib/qemu/virtiofsd"
	DefaultGuestOCI    = "/usr/bin/crun"
	AccelAuto          = "auto"
	AccelKVM           = "kvm"
	AccelTCG           = "tcg"
)

// DefaultVM is the VM section a vm handler gets for the keys it leaves out.
func DefaultVM() VM {
	return VM{VCPUs: DefaultVMVCPUs, MemoryMiB: DefaultVMMemoryMiB, Accel: AccelAuto,
		Virtiofsd: DefaultVirtiofsd, GuestRuntime: DefaultGuestOCI}
}

// fillHandlerDefaults gives vm handlers the defaults of the keys they leave
// out (handlers in a file replace the default set, so they have no defaults
// to inherit key by key).
func fillHandlerDefaults(hs map[string]Handler) {
	for n, h := range hs {
		if h.Kind != KindVM {
			continue
		}
		if h.Binary == "" {
			h.Binary = DefaultVMM
		}
		vm := DefaultVM()
		if h.VM != nil {
			vm.Kernel = h.VM.Kernel
			if h.VM.VCPUs != 0 {
				vm.VCPUs = h.VM.VCPUs
			}
			if h.VM.MemoryMiB != 0 {
				vm.MemoryMiB = h.VM.MemoryMiB
			}
			if h.VM.Accel != "" {
				vm.Accel = h.VM.Accel
			}
			if h.VM.Virtiofsd != "" {
				vm.Virtiofsd = h.VM.Virtiofsd
			}
			if h.VM.GuestRuntime != "" {
				vm.GuestRuntime = h.VM.GuestRuntime
			}
		}
		h.VM = &vm
		hs[n] = h
	}
}

// DefaultHandlerAuto as default_handler picks the handler at start
// (Runtime.ResolveDefaultHandler).
const DefaultHandlerAuto = "auto"

// ResolveDefaultHandler is the handler pods that name none run on: the
// configured one, or for auto, crun where it can run containers (ready:
// its binary and conmon were found), else runc, else any OCI handler that
// can (by name), else runc or the first handler by name, which then says
// why it cannot. crun comes first because it creates a container in about
// half runc's time and, with the daemon's read-only trees, passes the
// same CRI conformance specs; runc has CRIU where crun lacks it
// (CheckpointContainer), which a pod gets by naming the runc handler.
func (r Runtime) ResolveDefaultHandler(ready func(name string) bool) string {
	if _, named := r.Handlers[r.DefaultHandler]; named || r.DefaultHandler != DefaultHandlerAuto {
		return r.DefaultHandler
	}
	names := make([]string, 0, len(r.Handlers))
	for n := range r.Handlers {
		names = append(names, n)
	}
	slices.Sort(names)
	oci := func(n string) bool { h, ok := r.Handlers[n]; return ok && h.Kind == KindOCI }
	for _, n := range append([]string{"crun", "runc"}, names...) {
		if oci(n) && ready(n) {
			return n
		}
	}
	if _, ok := r.Handlers["runc"]; ok || len(names) == 0 {
		return "runc"
	}
	return names[0]
}

// Cgroup drivers.
const (
	CgroupDriverAuto     = "auto"
	CgroupDriverCgroupfs = "cgroupfs"
	CgroupDriverSystemd  = "systemd"
)

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Version: SchemaVersion,
		Root:    "/var/lib/cradle",
		State:   "/run/cradle",
		GRPC: GRPC{
			Socket:     "/run/cradle/cradle.sock",
			MaxRecvMiB: 16,
			MaxSendMiB: 16,
		},
		Log:     Log{Level: "info", Format: "text"},
		Metrics: Metrics{Address: "127.0.0.1:9326"},
		Images: Images{
			Snapshotter:            "overlayfs",
			RegistryConfigDir:      "/etc/cradle/certs.d",
			MaxConcurrentDownloads: 3,
			DialTimeout:            Duration(10 * time.Second),
			ResponseHeaderTimeout:  Duration(30 * time.Second),
			PullProgressTimeout:    Duration(5 * time.Minute),
			SandboxImage:           "registry.k8s.io/pause:3.10",
			Pinned:                 []string{},
			PreloadDir:             "/var/lib/cradle/preload",
		},
		Runtime: Runtime{
			CgroupDriver:   CgroupDriverAuto,
			DefaultHandler: DefaultHandlerAuto,
			Conmon:         "conmon",
			CgroupRoot:     "/cradle",
			EventBuffer:    1024,
			Handlers: map[string]Handler{
				"runc": {Kind: KindOCI, Binary: "runc"},
				"crun": {Kind: KindOCI, Binary: "crun"},
			},
		},
		Streaming: Streaming{Address: "127.0.0.1:0", IdleTimeout: Duration(4 * time.Hour)},
		NRI: NRI{
			SocketPath: "/var/run/nri/nri.sock", PluginPath: "/opt/nri/plugins", PluginConfigPath: "/etc/nri/conf.d",
			RegistrationTimeout: Duration(5 * time.Second), RequestTimeout: Duration(2 * time.Second),
		},
		Network: Network{
			Mode:       NetworkAuto,
			Bridge:     "cradle0",
			Subnet:     "10.88.0.0/16",
			MTU:        1500,
			Masquerade: true,
			CNIConfDir: "/etc/cni/net.d",
			CNIBinDirs: []string{"/opt/cni/bin", "/usr/lib/cni"},
		},
	}
}

// Marshal renders c as commented TOML, the format Load reads.
func Marshal(c Config) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# cradle configuration. Every key is optional: what a file leaves out keeps\n")
	buf.WriteString("# the built-in default shown here (`cradle config default` prints this file).\n\n")
	enc := toml.NewEncoder(&buf).SetIndentTables(true)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// Decode reads TOML over the defaults: keys the input leaves out keep their
// default, unknown keys are errors. The result is validated.
func Decode(r io.Reader) (Config, error) {
	c := Default()
	// Handlers given in a file replace the default set as a whole, so that an
	// operator can remove a handler by leaving it out.
	c.Runtime.Handlers = nil
	dec := toml.NewDecoder(r).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return Config{}, fmt.Errorf("unknown configuration keys:\n%s", strict.String())
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return Config{}, fmt.Errorf("line %d column %d: %w", row, col, err)
		}
		return Config{}, err
	}
	if c.Runtime.Handlers == nil {
		c.Runtime.Handlers = Default().Runtime.Handlers
	}
	fillHandlerDefaults(c.Runtime.Handlers)
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Load reads the file at path. With mustExist false, a missing file yields
// the defaults (the behaviour for DefaultPath).
func Load(path string, mustExist bool) (Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		c := Default()
		return c, c.Validate()
	}
	if err != nil {
		return Config{}, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	c, err := Decode(f)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
