//go:build !guest

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"time"

	capability "github.com/containerd/containerd/v2/pkg/cap"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/cri"
	"github.com/cradle-runtime/cradle/pkg/metrics"
	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/nri"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	"github.com/cradle-runtime/cradle/pkg/storage"
	"github.com/cradle-runtime/cradle/pkg/streaming"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// stopGrace bounds how long a graceful stop waits for RPCs in flight.
const stopGrace = 10 * time.Second

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	// What the daemon inherited (a lock its starter held, a terminal) must
	// not live on in the processes it starts and that outlive it (QEMU,
	// virtiofsd, monitors): they would hold it for days.
	_ = unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	cfg, err := serveConfig(args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	bridgeContainerdLogs(log, cfg.Log.Level)
	return serve(ctx, cfg, log)
}

// serveConfig parses serve's flags: --config, and --log-level, which
// overrides log.level.
func serveConfig(args []string, stderr io.Writer) (config.Config, error) {
	var level string
	cfg, _, err := parseWithConfig("serve", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&level, "log-level", "", "log level (debug, info, warn, error); overrides the configuration's log.level")
	})
	if err != nil || level == "" {
		return cfg, err
	}
	if err := config.CheckLogLevel(level); err != nil {
		return config.Config{}, usageErrorf("serve: --log-level: %v", err)
	}
	cfg.Log.Level = level
	return cfg, nil
}

// parseWithConfig parses a subcommand's flags (--config plus what addFlags
// adds) and loads the configuration.
func parseWithConfig(name string, args []string, stderr io.Writer, addFlags func(*flag.FlagSet)) (config.Config, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlag(fs)
	if addFlags != nil {
		addFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, nil, err
		}
		return config.Config{}, nil, usageErrorf("%s: %v", name, err)
	}
	if fs.NArg() > 0 {
		return config.Config{}, nil, usageErrorf("%s: unexpected arguments %q", name, fs.Args())
	}
	cfg, err := load()
	return cfg, fs, err
}

// configFlag adds --config to fs and returns the loader to call after
// parsing: an explicit file must exist, the default path may be missing.
func configFlag(fs *flag.FlagSet) func() (config.Config, error) {
	path := fs.String("config", config.DefaultPath, "configuration file (a missing default file means built-in defaults)")
	return func() (config.Config, error) {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
		return config.Load(*path, explicit)
	}
}

// newLogger makes the logger of c on w. Its records name the RPC whose
// context they are logged with (cri.LogHandler).
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(cri.LogHandler(h))
}

// openImages opens the image store the configuration describes.
func openImages(ctx context.Context, cfg config.Config, log *slog.Logger) (*storage.Store, error) {
	s, err := storage.Open(ctx, storage.Options{
		Root:                   filepath.Join(cfg.Root, "images"),
		RegistryConfigDir:      cfg.Images.RegistryConfigDir,
		MaxConcurrentDownloads: cfg.Images.MaxConcurrentDownloads,
		DialTimeout:            cfg.Images.DialTimeout.D(),
		ResponseHeaderTimeout:  cfg.Images.ResponseHeaderTimeout.D(),
		PullProgressTimeout:    cfg.Images.PullProgressTimeout.D(),
		Pinned:                 append([]string{cfg.Images.SandboxImage}, cfg.Images.Pinned...),
		Logger:                 log.With("component", "images"),
		Failpoint:              failpoint(os.Getenv("CRADLE_FAILPOINT"), log),
		Idle:                   func() { settleMemory(log) },
	})
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

// serve wires the daemon and runs it until ctx ends.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	log.Info("starting cradle", "version", version, "root", cfg.Root, "socket", cfg.GRPC.Socket)
	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	// First, so that a start-up that hangs (recovery, a preload) can be seen.
	dumpStacksOnSignal(ctx, cfg.State, log)
	tuneMemory(cfg.Debug.Address != "", os.Getenv("GOGC") != "")
	if cfg.Debug.Address != "" {
		addr, err := serveDebug(ctx, cfg.Debug.Address, log)
		if err != nil {
			return err
		}
		log.Info("serving pprof", "address", addr.String(), "path", "/debug/pprof/")
	}
	deps, closeAll, err := wire(ctx, cfg, log)
	defer closeAll()
	if err != nil {
		return err
	}
	if cfg.Metrics.Address != "" {
		deps.Metrics = metrics.New()
		deps.Metrics.WatchEngine(deps.Pods)
		addr, err := deps.Metrics.Serve(ctx, cfg.Metrics.Address, log)
		if err != nil {
			return err
		}
		log.Info("serving metrics", "address", addr.String())
	}
	stopStreams, err := serveStreams(ctx, cfg.Streaming, &deps, log)
	if err != nil {
		return err
	}
	defer stopStreams() // before closeAll: sessions end while the engine is up
	lis, err := listen(cfg.GRPC)
	if err != nil {
		return err
	}
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.GRPC.MaxRecvMiB<<20),
		grpc.MaxSendMsgSize(cfg.GRPC.MaxSendMiB<<20),
		grpc.ChainUnaryInterceptor(cri.UnaryInterceptor(log, deps.Metrics)),
		grpc.ChainStreamInterceptor(cri.StreamInterceptor(log, deps.Metrics)),
	)
	cri.Register(g, deps)
	cri.RegisterAdmin(g, deps.Images, filepath.Join(cfg.Root, "tmp"), deps.Metrics)
	settleMemory(log) // start-up's garbage and its one-time code
	return runServer(ctx, g, lis, cfg.GRPC.Socket, log)
}

// wire opens the image store, the pod network and the pod engine. The
// returned function closes what was opened, also after an error.
func wire(ctx context.Context, cfg config.Config, log *slog.Logger) (cri.Deps, func(), error) {
	var closers []func() error
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				log.Warn("close", "error", err)
			}
		}
	}
	deps := cri.Deps{Config: cfg, Logger: log, Version: cri.Version{Version: version, Commit: commit}}
	images, err := openImages(ctx, cfg, log)
	if err != nil {
		return deps, closeAll, err
	}
	closers = append(closers, images.Close)
	deps.Images = images
	preload := startPreload(ctx, cfg.Images.PreloadDir, images.Preload, log)
	closers = append(closers, preload.wait) // closed before the store
	netw, err := network.New(ctx, cfg.Network, cfg.Root, cfg.State, log.With("component", "network"))
	if err != nil {
		return deps, closeAll, fmt.Errorf("pod network: %w", err)
	}
	closers = append(closers, netw.Close)
	deps.Network = netw
	deps.Handlers = sandbox.ProbeHandlers(ctx, cfg.Runtime)
	vms, vmClosers := vmBackends(ctx, cfg, deps.Handlers, podNetwork{m: netw}, log)
	closers = append(closers, vmClosers...)
	for _, h := range deps.Handlers {
		log.Info("runtime handler", "name", h.Name, "kind", h.Kind, "binary", h.Binary, "version", h.Version,
			"rro", h.Features.RecursiveReadOnlyMounts, "userns", h.Features.UserNamespaces, "accel", h.Accel,
			"problem", h.Problem)
	}
	deps.CgroupDriver = sandbox.ResolveCgroupDriver(cfg.Runtime.CgroupDriver)
	log.Info("cgroup driver", "configured", cfg.Runtime.CgroupDriver, "in_use", deps.CgroupDriver)
	runtimes := ociRuntimes(cfg, deps.Handlers, log)
	configured := cfg.Runtime.DefaultHandler
	cfg.Runtime.DefaultHandler = cfg.Runtime.ResolveDefaultHandler(func(name string) bool { return runtimes[name] != nil })
	deps.Config.Runtime.DefaultHandler = cfg.Runtime.DefaultHandler
	log.Info("default handler", "configured", configured, "in_use", cfg.Runtime.DefaultHandler)
	deps.RuntimeReady = func() (bool, string, string) {
		if reason, message, ok := preload.notReady(); !ok {
			return false, reason, message
		}
		if _, ok := runtimes[cfg.Runtime.DefaultHandler]; ok {
			return true, "", ""
		}
		return false, "DefaultHandlerUnavailable", fmt.Sprintf("the default handler %q cannot run containers: its OCI runtime or conmon is missing (see the log and `cradle check`)", cfg.Runtime.DefaultHandler)
	}
	deps.Pods, err = newPodManager(ctx, cfg, netw, images, deps.Handlers, runtimes, vms, log)
	return deps, closeAll, err
}

// serveStreams starts the exec / attach / port-forward server and sets
// deps.Streams. The returned function stops it, ending every session.
func serveStreams(ctx context.Context, c config.Streaming, deps *cri.Deps, log *slog.Logger) (func(), error) {
	streams, err := streaming.New(streaming.Config{Address: c.Address, IdleTimeout: c.IdleTimeout.D()},
		deps.Pods, log.With("component", "streaming"))
	if err != nil {
		return nil, err
	}
	deps.Streams = streams
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := streams.Serve(ctx); err != nil {
			log.Error("streaming server stopped", "error", err)
		}
	}()
	log.Info("serving streams", "address", streams.Addr().String())
	return func() { cancel(); <-done }, nil
}

// runServer serves until ctx ends, then stops gracefully: RPCs in flight get
// stopGrace to finish.
func runServer(ctx context.Context, g *grpc.Server, lis net.Listener, socket string, log *slog.Logger) error {
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	log.Info("serving CRI", "socket", socket)
	if err := notifyReady(); err != nil {
		log.Warn("notify systemd", "error", err)
	}
	select {
	case err := <-served:
		return fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	log.Info("stopping: waiting for RPCs in flight", "grace", stopGrace)
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		log.Warn("grace period over: cancelling RPCs in flight")
		g.Stop()
	}
	_ = os.Remove(socket)
	log.Info("stopped")
	return nil
}

// listen opens the CRI socket: parent directories created, mode 0660, owned
// by the configured group. A socket file nobody answers on is stale and
// replaced; one that answers belongs to a live daemon and is left alone.
func listen(c config.GRPC) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(c.Socket), 0o711); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if fi, err := os.Lstat(c.Socket); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", c.Socket)
		}
		if conn, err := net.DialTimeout("unix", c.Socket, time.Second); err == nil {
			_ = conn.Close()
			return nil, fmt.Errorf("another process is serving on %s", c.Socket)
		}
		if err := os.Remove(c.Socket); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", c.Socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", c.Socket, err)
	}
	if err := secureSocket(c); err != nil {
		_ = lis.Close()
		return nil, err
	}
	return lis, nil
}

func secureSocket(c config.GRPC) error {
	if err := os.Chmod(c.Socket, 0o660); err != nil {
		return fmt.Errorf("chmod socket: %w", err)
	}
	if c.SocketGroup == "" {
		return nil
	}
	gid, err := strconv.Atoi(c.SocketGroup)
	if err != nil {
		g, lerr := user.LookupGroup(c.SocketGroup)
		if lerr != nil {
			return fmt.Errorf("socket group %q: %w", c.SocketGroup, lerr)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fmt.Errorf("socket group %q: %w", c.SocketGroup, err)
		}
	}
	if err := os.Chown(c.Socket, -1, gid); err != nil {
		return errors.Join(fmt.Errorf("chown socket to group %d", gid), err)
	}
	return nil
}

// newPodManager wires the pod engine: a backend per handler (vms holds
// those of the vm handlers that are ready), the network, cgroups; then
// recovers the pods of an earlier run.
func newPodManager(ctx context.Context, cfg config.Config, netw *network.Manager, images *storage.Store,
	handlers []sandbox.Handler, runtimes map[string]*ociruntime.Runtime, vms map[string]sandbox.Backend,
	log *slog.Logger) (*sandbox.Manager, error) {
	cg, err := cgroup.New()
	if err != nil {
		return nil, err
	}
	log.Info("cgroup layout", "layout", cg.Layout())
	pause, err := pauseCommand(cfg.State)
	if err != nil {
		return nil, err
	}
	plugins, err := newNRI(cfg.NRI, log)
	if err != nil {
		return nil, err
	}
	var hooks sandbox.NRI // a nil *nri.Service would be a non-nil interface
	if plugins != nil {
		hooks = plugins
	}
	backends := vms
	features := handlerFeatures(handlers)
	for name, h := range cfg.Runtime.Handlers {
		if h.Kind == config.KindOCI {
			backends[name] = nsbox.New(log.With("component", "nsbox", "handler", name), runtimes[name], pause, cg, features[name])
		}
	}
	pods, err := sandbox.New(sandbox.Options{
		StateDir:       filepath.Join(cfg.State, "pods"),
		ContainerDir:   filepath.Join(cfg.State, "containers"),
		Images:         podImages{s: images},
		Host:           hostFacts(cg),
		Features:       features,
		AllowedCaps:    ownCapabilities(log),
		CheckpointDir:  filepath.Join(cfg.Root, "checkpoints"),
		LogDir:         filepath.Join(cfg.Root, "logs"),
		DefaultHandler: cfg.Runtime.DefaultHandler,
		Backends:       backends,
		Network:        podNetwork{m: netw},
		Cgroups:        cg,
		CgroupRoot:     cfg.Runtime.CgroupRoot,
		SystemdCgroups: sandbox.ResolveCgroupDriver(cfg.Runtime.CgroupDriver) == config.CgroupDriverSystemd,
		EventBuffer:    cfg.Runtime.EventBuffer,
		Logger:         log.With("component", "pods"),
		Failpoint:      failpoint(os.Getenv("CRADLE_FAILPOINT"), log),
		NRI:            hooks,
		V1Configs:      cri.V1Configs{}, // version-1 checkpoints held CRI messages: read at the edge
	})
	if err != nil {
		return nil, err
	}
	if err := pods.Recover(ctx); err != nil {
		return nil, err
	}
	if plugins != nil {
		if err := plugins.Start(pods); err != nil {
			return nil, fmt.Errorf("start NRI: %w", err)
		}
		log.Info("serving NRI plugins", "socket", cfg.NRI.SocketPath, "plugin_path", cfg.NRI.PluginPath)
		go func() { <-ctx.Done(); plugins.Stop() }()
	}
	return pods, nil
}

// newNRI makes the NRI plugin host when the configuration enables it
// (nil otherwise: the engine then has no plugins).
func newNRI(c config.NRI, log *slog.Logger) (*nri.Service, error) {
	if !c.Enable {
		return nil, nil
	}
	return nri.New(nri.Config{
		SocketPath: c.SocketPath, PluginPath: c.PluginPath, PluginConfigPath: c.PluginConfigPath,
		RegisterTimeout: c.RegistrationTimeout.D(), RequestTimeout: c.RequestTimeout.D(),
	}, "cradle", version, log.With("component", "nri"))
}

// ociRuntimes makes the OCI runtime driver of each handler whose binary was
// found, with conmon as the monitor. A handler without one runs pods but no
// containers, and says why in the log.
func ociRuntimes(cfg config.Config, handlers []sandbox.Handler, log *slog.Logger) map[string]*ociruntime.Runtime {
	out := map[string]*ociruntime.Runtime{}
	conmon, err := exec.LookPath(cfg.Runtime.Conmon)
	if err != nil {
		log.Error("conmon not found: no handler can run containers (apt-get install conmon, or set runtime.conmon)",
			"conmon", cfg.Runtime.Conmon, "error", err)
		return out
	}
	// A relative path LookPath found in the working directory (a name
	// with a slash) must not change meaning later.
	if conmon, err = filepath.Abs(conmon); err != nil {
		log.Error("conmon path", "conmon", cfg.Runtime.Conmon, "error", err)
		return out
	}
	fail := failpoint(os.Getenv("CRADLE_FAILPOINT"), log)
	for _, h := range handlers {
		if h.Binary == "" || h.Kind != config.KindOCI {
			continue
		}
		rt, err := ociruntime.New(ociruntime.Config{
			Name: h.Name, Binary: h.Binary, Conmon: conmon,
			Root:      filepath.Join(cfg.State, "runtime", h.Name),
			StateDir:  filepath.Join(cfg.State, "monitors", h.Name),
			Log:       log.With("component", "ociruntime"),
			Failpoint: fail,
		})
		if err != nil {
			log.Error("runtime handler cannot run containers", "handler", h.Name, "error", err)
			continue
		}
		out[h.Name] = rt
	}
	return out
}

// ownCapabilities lists the capabilities this process holds: containers
// cannot be given more (root may lack some, e.g. CAP_SYS_RESOURCE).
func ownCapabilities(log *slog.Logger) []string {
	caps, err := capability.Current()
	if err != nil {
		log.Warn("read own capabilities; containers get what they ask for", "error", err)
		return nil
	}
	return caps
}

// pauseCommand is the infra process of pods that share a PID namespace: the
// tiny static program cradle has for this architecture, written under
// state, or else cradle's own `pause`.
func pauseCommand(state string) ([]string, error) {
	if prog := nsbox.PauseProgram(goruntime.GOARCH); prog != nil {
		p := filepath.Join(state, "pause")
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, prog, 0o755); err != nil {
			return nil, fmt.Errorf("write the pause program: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return nil, fmt.Errorf("write the pause program: %w", err)
		}
		return []string{p}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find cradle's own binary: %w", err)
	}
	return []string{self, "pause"}, nil
}
