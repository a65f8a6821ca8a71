package vmbox

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// templates are a vm handler's VM templates, one per machine shape (the
// kernel, initramfs and size a pod's VM has), in dir/<key prefix>. The
// first pod of a shape builds its template (pods of that shape arriving
// meanwhile wait for it); a template that cannot be built or restored is
// logged, the pod boots cold, and no build is tried again for
// templateRetry.
type templates struct {
	dir string

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
	return &templates{dir: dir, byKey: map[string]*templateSlot{}, failed: map[string]time.Time{}}
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
	key, err := TemplateKey(spec)
	if err != nil {
		b.log.WarnContext(ctx, "vm template: booting cold", "error", err)
		return Template{}, false
	}
	ts.mu.Lock()
	if t, failed := ts.failed[key]; failed && time.Since(t) < templateRetry {
		ts.mu.Unlock()
		return Template{}, false
	}
	slot, ok := ts.byKey[key]
	if !ok {
		slot = &templateSlot{ready: make(chan struct{})}
		ts.byKey[key] = slot
		go ts.fill(context.WithoutCancel(ctx), slot, spec, key, b)
	}
	ts.mu.Unlock()
	select {
	case <-slot.ready:
	case <-ctx.Done():
		return Template{}, false
	}
	return slot.tpl, slot.err == nil
}

// fill opens the template of key, or builds it; a failure is remembered
// for templateRetry.
func (ts *templates) fill(ctx context.Context, slot *templateSlot, spec VMSpec, key string, b *Backend) {
	defer close(slot.ready)
	dir := filepath.Join(ts.dir, key[:16])
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
