package vmbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
)

// templates are a vm handler's VM templates, one per machine shape (the
// kernel, initramfs and size a pod's VM has), in dir/<key prefix>; dir is
// the handler's own. The
// first pod of a shape builds its template (pods of that shape arriving
// meanwhile wait for it); a template that cannot be built or restored is
// logged, the pod boots cold, and no build is tried again for
// templateRetry.
type templates struct {
	dir string
	// ctx bounds template builds: the daemon's lifetime (StartTemplates),
	// not one pod's request, since other pods wait on a build too.
	ctx    context.Context
	builds sync.WaitGroup

	mu     sync.Mutex
	byKey  map[string]*templateSlot
	failed map[string]time.Time
}

type templateSlot struct {
	ready chan struct{} // closed once built (or failed)
	tpl   Template
	err   error
}

// templateRetry is how long a template that failed to build or restore
// is not tried again.
const templateRetry = time.Minute

func newTemplates(dir string) *templates {
	if dir == "" {
		return nil
	}
	killTemplateBuilds(dir)
	// Made now, so that the directory says templates are on from the
	// moment the daemon serves.
	_ = os.MkdirAll(dir, 0o700)
	return &templates{dir: dir, ctx: context.Background(), byKey: map[string]*templateSlot{}, failed: map[string]time.Time{}}
}

// killTemplateBuilds ends the template VMs a crashed daemon was building
// (their RAM file is in a .new directory under dir): nothing else waits
// for them.
func killTemplateBuilds(dir string) {
	for _, pid := range processesNaming([]byte("mem-path="+dir+"/"), []byte(".new/"+templateRAMFile+",share=on")) {
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			_ = unix.Close(fd)
		}
	}
}

// get returns the template for spec's shape, building it first when there
// is none (or only a stale or damaged one). ok is false when there is no
// usable template: the pod boots cold.
func (ts *templates) get(ctx context.Context, spec VMSpec, b *Backend) (Template, bool) {
	if ts == nil {
		return Template{}, false
	}
	slot := ts.slot(ctx, spec, b)
	if slot == nil {
		return Template{}, false
	}
	select {
	case <-slot.ready:
	case <-ctx.Done():
		return Template{}, false
	}
	return slot.tpl, slot.err == nil
}

// slot is the template slot of spec's shape, its build started when it
// has none; nil when there is no key or a build failed lately.
func (ts *templates) slot(ctx context.Context, spec VMSpec, b *Backend) *templateSlot {
	key, err := TemplateKey(spec)
	if err != nil {
		b.log.WarnContext(ctx, "vm template: booting cold", "error", err)
		return nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t, failed := ts.failed[key]; failed && time.Since(t) < templateRetry {
		return nil
	}
	slot, ok := ts.byKey[key]
	if !ok {
		slot = &templateSlot{ready: make(chan struct{})}
		ts.byKey[key] = slot
		ts.builds.Add(1)
		go func() {
			defer ts.builds.Done()
			ts.fill(ts.ctx, slot, spec, key, b)
		}()
	}
	return slot
}

// StartTemplates starts building, in the background, the template of the
// handler's default machine shape (a pod that asks for no resources), so
// that the first pod clones it; ctx (the daemon's lifetime) bounds every
// template build. Close waits for the builds. Call it before the backend
// serves.
func (b *Backend) StartTemplates(ctx context.Context) {
	if b.templates == nil {
		return
	}
	b.templates.ctx = ctx
	spec := b.spec(&sandbox.Pod{ID: "template"})
	if key, err := TemplateKey(spec); err == nil {
		b.templates.prune(ctx, templateDirName(key), b)
	}
	b.templates.slot(ctx, spec, b)
}

// templateDirName is the directory, under a handler's templates, of the
// template of key.
func templateDirName(key string) string { return key[:16] }

// prune removes the handler's templates but keep: stale ones (made for
// another kernel, initramfs, QEMU or size) and what a crashed build left.
// Pods of another shape build theirs again when they come. Clones of a
// removed template run on: their QEMU maps its RAM file, which lives
// until they end.
func (ts *templates) prune(ctx context.Context, keep string, b *Backend) {
	entries, _ := os.ReadDir(ts.dir)
	for _, e := range entries {
		if e.Name() == keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(ts.dir, e.Name())); err != nil {
			b.log.WarnContext(ctx, "vm template: cannot remove a stale one", "error", err)
			continue
		}
		b.log.InfoContext(ctx, "vm template removed", "template", e.Name())
	}
}

// Close waits for the template builds in flight, which end with the
// context StartTemplates was given.
func (b *Backend) Close() error {
	if b.templates != nil {
		b.templates.builds.Wait()
	}
	return nil
}

// fill opens the template of key, or builds it; a failure is remembered
// for templateRetry.
func (ts *templates) fill(ctx context.Context, slot *templateSlot, spec VMSpec, key string, b *Backend) {
	defer close(slot.ready)
	dir := filepath.Join(ts.dir, templateDirName(key))
	slot.tpl, slot.err = OpenTemplate(dir, key)
	if slot.err == nil {
		return
	}
	if !errors.Is(slot.err, errdefs.ErrNotFound) {
		b.log.WarnContext(ctx, "vm template unusable: building it anew", "error", slot.err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*b.machine.BootTimeout)
	defer cancel()
	slot.tpl, slot.err = BuildTemplate(ctx, spec, dir, b.log)
	if slot.err != nil {
		b.log.WarnContext(ctx, "vm template: cannot build it; pods boot cold", "error", slot.err, "retry_in", templateRetry)
		ts.forget(key)
	}
}

// forget drops key's template (it failed to build or to restore): the
// next pod after templateRetry builds it anew.
func (ts *templates) forget(key string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.byKey, key)
	ts.failed[key] = time.Now()
}

// startFromTemplate starts the pod's VM as a clone of its shape's
// template; ok false: there is none, or the restore failed (logged), and
// the caller boots cold.
func (b *Backend) startFromTemplate(ctx context.Context, spec VMSpec) (*VM, bool) {
	tpl, ok := b.templates.get(ctx, spec, b)
	if !ok {
		return nil, false
	}
	vm, err := StartClone(ctx, spec, tpl, b.log)
	if err != nil {
		if ctx.Err() == nil {
			b.log.WarnContext(ctx, "vm template: restore failed; booting cold", "template", tpl.Dir, "error", err)
			b.templates.forget(tpl.Meta.Key)
		}
		return nil, false
	}
	return vm, true
}
