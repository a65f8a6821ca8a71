package vmbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// A template is a guest booted once and saved where its agent waits for
// its first host: QEMU's device state in a file (a migration stream), and
// guest RAM in another, which the template VM mapped shared and so wrote
// through. A clone is a new QEMU with the same devices that maps the RAM
// file private (copy-on-write) and loads the device state
// (x-ignore-shared: the RAM is not in the stream): it runs on from where
// the template stopped, without booting, and the pages it never writes
// stay one copy in the page cache for every clone. The agent then gives
// it its identity (SetupSandbox: hostname, clock, fresh entropy; then
// SetupNetwork: the pod's MAC and addresses).
//
// A template is keyed by what its guest is made from (TemplateKey): a
// new kernel, initramfs, QEMU or machine size makes a new one.

// Template is a saved template in Dir.
type Template struct {
	Dir  string
	Meta TemplateMeta
}

// TemplateMeta is a template's template.json.
type TemplateMeta struct {
	Key      string
	RAMBytes int64
	// StateSHA256 is the device state file's digest: a clone of a
	// damaged state would not boot.
	StateSHA256 string
	Created     time.Time
	// BootTook is how long the template's guest took to boot.
	BootTook time.Duration
}

// Files of a template directory.
const (
	templateRAMFile   = "ram"
	templateStateFile = "state"
	templateMetaFile  = "template.json"
	templateShareDir  = "share" // the template's 9p share: empty
)

// RAM is the template's guest RAM file.
func (t Template) RAM() string { return filepath.Join(t.Dir, templateRAMFile) }

// State is the template's device state (a QEMU migration stream).
func (t Template) State() string { return filepath.Join(t.Dir, templateStateFile) }

// templateSpec is spec as the template of its kind boots it: in dir, with
// no pod's network, share or console.
func templateSpec(spec VMSpec, dir string) VMSpec {
	spec.Name = "cradle-template"
	spec.Dir = dir
	spec.NetNS, spec.Tap, spec.MAC, spec.ConsoleLog = "", "", "", ""
	spec.VirtioFS, spec.Incoming = false, false
	spec.TemplateRAM = filepath.Join(dir, templateRAMFile)
	spec.Shared9P = filepath.Join(dir, templateShareDir)
	return spec
}

// TemplateKey identifies the template spec's VMs can be cloned from: the
// digest of the template's QEMU command line (kernel and initramfs are
// content-addressed paths; the kernel command line, machine, size and
// accelerator are in it; the TSC rate is not) and of the QEMU binary's
// size and time.
func TemplateKey(spec VMSpec) (string, error) {
	fi, err := os.Stat(spec.QEMU)
	if err != nil {
		return "", fmt.Errorf("template key: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "qemu %s %d %d\n", spec.QEMU, fi.Size(), fi.ModTime().UnixNano())
	// The host TSC rate is measured at each start, a few kHz apart: a
	// clone runs on the template's rate (the same host's), which only a
	// boot reads.
	spec.TSCKHz = 0
	for _, a := range QEMUArgs(templateSpec(spec, "/template")) {
		fmt.Fprintf(h, "%s\n", a)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// OpenTemplate returns the template saved in dir if it is whole and its
// key is key. A missing one is NotFound; a stale or damaged one
// FailedPrecondition (the caller boots cold and builds it anew).
func OpenTemplate(dir, key string) (Template, error) {
	t := Template{Dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, templateMetaFile))
	if errors.Is(err, os.ErrNotExist) {
		return t, fmt.Errorf("template %s: %w", dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("template %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &t.Meta); err != nil {
		return t, fmt.Errorf("template %s: %v: %w", dir, err, errdefs.ErrFailedPrecondition)
	}
	if t.Meta.Key != key {
		return t, fmt.Errorf("template %s is stale (made for another kernel, initramfs, QEMU or machine): %w", dir, errdefs.ErrFailedPrecondition)
	}
	if fi, err := os.Stat(t.RAM()); err != nil || fi.Size() != t.Meta.RAMBytes {
		return t, fmt.Errorf("template %s: its RAM file is missing or cut short: %w", dir, errdefs.ErrFailedPrecondition)
	}
	if sum, err := fileSHA256(t.State()); err != nil || sum != t.Meta.StateSHA256 {
		return t, fmt.Errorf("template %s: its device state is missing or damaged: %w", dir, errdefs.ErrFailedPrecondition)
	}
	return t, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BuildTemplate boots a guest of spec's shape (templateSpec: no pod's
// network, share or virtiofs), stops it once its agent
// has opened its port (it waits there for its first host), saves it into
// dir (replacing what is there) and ends it. The template is built in a
// directory beside dir and renamed into place: a crash leaves dir as it
// was, and the temporary directory, which the next build removes.
func BuildTemplate(ctx context.Context, spec VMSpec, dir string, log *slog.Logger) (Template, error) {
	key, err := TemplateKey(spec)
	if err != nil {
		return Template{}, err
	}
	tmp := dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	ts := templateSpec(spec, tmp)
	if err := os.MkdirAll(ts.Shared9P, 0o700); err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	vm, err := Start(ctx, ts, log)
	if err != nil {
		return Template{}, fmt.Errorf("boot the template: %w", err)
	}
	defer func() { _ = vm.Stop(context.WithoutCancel(ctx)) }()
	if err := saveTemplate(ctx, vm, ts); err != nil {
		return Template{}, err
	}
	meta := TemplateMeta{Key: key, RAMBytes: int64(spec.MemoryMiB) << 20, Created: time.Now(), BootTook: time.Since(start)}
	if meta.StateSHA256, err = fileSHA256(filepath.Join(tmp, templateStateFile)); err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	if err := writeTemplateMeta(tmp, meta); err != nil {
		return Template{}, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	log.InfoContext(ctx, "vm template saved", "dir", dir, "boot", meta.BootTook, "took", time.Since(start))
	return Template{Dir: dir, Meta: meta}, nil
}

// saveTemplate waits until the guest's agent has its port open, pauses
// the guest and writes its device state (without RAM: the RAM file holds
// it), then quits QEMU, whose shared mapping leaves the RAM in the file.
func saveTemplate(ctx context.Context, vm *VM, spec VMSpec) error {
	q, err := dialQMPRetry(ctx, vm, spec.QMPSocket())
	if err != nil {
		return err
	}
	defer q.Close()
	if err := waitAgentPortOpen(ctx, vm, q); err != nil {
		return err
	}
	if _, err := q.execute("stop", nil); err != nil {
		return err
	}
	if err := setIgnoreShared(q); err != nil {
		return err
	}
	state := filepath.Join(spec.Dir, templateStateFile)
	if _, err := q.execute("migrate", map[string]any{"uri": "exec:cat > " + shellQuote(state)}); err != nil {
		return err
	}
	if err := waitMigration(ctx, vm, q); err != nil {
		return err
	}
	if _, err := q.execute("quit", nil); err != nil {
		return err
	}
	select {
	case <-vm.Exited():
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, f := range []string{state, spec.TemplateRAM} {
		if err := syncFile(f); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	return nil
}

func writeTemplateMeta(dir string, meta TemplateMeta) error {
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, templateMetaFile)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	return syncFile(p)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// shellQuote quotes s for /bin/sh (QEMU runs exec: migration URIs with
// it).
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// dialQMPRetry connects to the VM's QMP socket, which QEMU makes a moment
// after it starts.
func dialQMPRetry(ctx context.Context, vm *VM, socket string) (*qmpConn, error) {
	for {
		q, err := qmpDial(ctx, socket)
		if err == nil {
			return q, nil
		}
		if err := vmWait(ctx, vm, 10*time.Millisecond); err != nil {
			return nil, fmt.Errorf("qmp: %w", err)
		}
	}
}

// vmWait sleeps d, or fails when ctx ends or QEMU exits first.
func vmWait(ctx context.Context, vm *VM, d time.Duration) error {
	select {
	case <-vm.Exited():
		return fmt.Errorf("qemu exited: %s", vm.qemuLog())
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// waitAgentPortOpen polls QEMU until the guest has opened the agent's
// virtio-serial port (its chardev's frontend is open): the agent is up and
// waits for a host.
func waitAgentPortOpen(ctx context.Context, vm *VM, q *qmpConn) error {
	for {
		ret, err := q.execute("query-chardev", nil)
		if err != nil {
			return err
		}
		var devs []struct {
			Label        string `json:"label"`
			FrontendOpen bool   `json:"frontend-open"`
		}
		if err := json.Unmarshal(ret, &devs); err != nil {
			return fmt.Errorf("query-chardev: %w", err)
		}
		for _, d := range devs {
			if d.Label == "agent" && d.FrontendOpen {
				return nil
			}
		}
		if err := vmWait(ctx, vm, 20*time.Millisecond); err != nil {
			return fmt.Errorf("wait for the template's agent: %w", err)
		}
	}
}

func setIgnoreShared(q *qmpConn) error {
	_, err := q.execute("migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	})
	return err
}

// waitMigration polls query-migrate until the outgoing migration has
// completed.
func waitMigration(ctx context.Context, vm *VM, q *qmpConn) error {
	for {
		ret, err := q.execute("query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return fmt.Errorf("query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("save the template: migration %s: %s", st.Status, st.ErrorDesc)
		}
		if err := vmWait(ctx, vm, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

// StartClone starts a VM as spec describes from template t: QEMU maps
// t's RAM copy-on-write, loads t's device state and runs on. The caller
// then waits for the agent (WaitReady) and gives the guest its identity.
// spec's shared directory (Shared9P) and tap are the clone's own.
func StartClone(ctx context.Context, spec VMSpec, t Template, log *slog.Logger) (*VM, error) {
	spec.TemplateRAM, spec.Incoming, spec.VirtioFS = t.RAM(), true, false
	start := time.Now()
	vm, err := Start(ctx, spec, log)
	if err != nil {
		return nil, err
	}
	if err := restoreClone(ctx, vm, spec, t); err != nil {
		_ = vm.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("restore from template %s: %w", t.Dir, err)
	}
	log.DebugContext(ctx, "vm restored from its template", "name", spec.Name, "took", time.Since(start))
	return vm, nil
}

func restoreClone(ctx context.Context, vm *VM, spec VMSpec, t Template) error {
	start := time.Now()
	q, err := dialQMPRetry(ctx, vm, spec.QMPSocket())
	if err != nil {
		return err
	}
	defer q.Close()
	vm.log.DebugContext(ctx, "vm clone: qmp up", "took", time.Since(start))
	if err := setIgnoreShared(q); err != nil {
		return err
	}
	if _, err := q.execute("migrate-incoming", map[string]any{"uri": "exec:cat " + shellQuote(t.State())}); err != nil {
		return err
	}
	for {
		ret, err := q.execute("query-status", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return fmt.Errorf("query-status: %w", err)
		}
		switch st.Status {
		case "running":
			vm.log.DebugContext(ctx, "vm clone: running", "took", time.Since(start))
			return nil
		case "paused":
			// Loaded, in the template's run state: it was stopped to be
			// saved.
			if _, err := q.execute("cont", nil); err != nil {
				return err
			}
			continue
		case "inmigrate", "prelaunch":
		default:
			return fmt.Errorf("the clone is %s, not running", strconv.Quote(st.Status))
		}
		if err := vmWait(ctx, vm, 5*time.Millisecond); err != nil {
			return err
		}
	}
}
