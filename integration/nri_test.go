package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nri "github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// envPlugin is an NRI plugin in the shape of the nri module's template
// plugin: it injects an environment variable and an annotation into every
// container it sees created, and records the lifecycle events it gets.
type envPlugin struct {
	synced chan struct{}
	once   sync.Once
	mu     sync.Mutex
	events []string // "<event> <container name>"
}

func (p *envPlugin) Synchronize(context.Context, []*nri.PodSandbox, []*nri.Container) ([]*nri.ContainerUpdate, error) {
	p.once.Do(func() { close(p.synced) })
	return nil, nil
}

func (p *envPlugin) record(ev string, c *nri.Container) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, ev+" "+c.GetName())
}

func (p *envPlugin) Events() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *envPlugin) CreateContainer(_ context.Context, _ *nri.PodSandbox, c *nri.Container) (*nri.ContainerAdjustment, []*nri.ContainerUpdate, error) {
	p.record("create", c)
	adj := &nri.ContainerAdjustment{}
	adj.AddEnv("NRI_INJECTED", "by-plugin-"+c.GetName())
	adj.AddAnnotation("example.com/nri-plugin", "env")
	return adj, nil, nil
}

func (p *envPlugin) StartContainer(_ context.Context, _ *nri.PodSandbox, c *nri.Container) error {
	p.record("start", c)
	return nil
}

func (p *envPlugin) StopContainer(_ context.Context, _ *nri.PodSandbox, c *nri.Container) ([]*nri.ContainerUpdate, error) {
	p.record("stop", c)
	return nil, nil
}

func (p *envPlugin) RemoveContainer(_ context.Context, _ *nri.PodSandbox, c *nri.Container) error {
	p.record("remove", c)
	return nil
}

// hungPlugin never answers CreateContainer (until the test ends).
type hungPlugin struct {
	synced  chan struct{}
	once    sync.Once
	release chan struct{}
	closed  chan struct{}
}

func (p *hungPlugin) Synchronize(context.Context, []*nri.PodSandbox, []*nri.Container) ([]*nri.ContainerUpdate, error) {
	p.once.Do(func() { close(p.synced) })
	return nil, nil
}

func (p *hungPlugin) CreateContainer(context.Context, *nri.PodSandbox, *nri.Container) (*nri.ContainerAdjustment, []*nri.ContainerUpdate, error) {
	<-p.release
	return nil, nil, nil
}

// startPlugin connects p to the daemon's NRI socket and waits for its
// synchronization.
func startPlugin(t *testing.T, socket, name, idx string, p any, synced <-chan struct{}, onClose func()) {
	t.Helper()
	opts := []stub.Option{stub.WithPluginName(name), stub.WithPluginIdx(idx), stub.WithSocketPath(socket)}
	if onClose != nil {
		opts = append(opts, stub.WithOnClose(onClose))
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatalf("plugin %s: %v", name, err)
	}
	t.Cleanup(func() { cancel(); s.Stop() })
	select {
	case <-synced:
	case <-time.After(20 * time.Second):
		t.Fatalf("plugin %s was not synchronized", name)
	}
}

// TestNRIPlugins: with [nri] enabled, a plugin that connects to the
// daemon's socket adjusts the containers it sees created (the container
// sees the variable it injects), gets their lifecycle in order, and a
// plugin that never answers delays creation by its request timeout, no
// more, and is disconnected.
func TestNRIPlugins(t *testing.T) {
	testutil.RequireBinary(t, "conmon")
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	dir := t.TempDir()
	socket := filepath.Join(dir, "run", "nri.sock")
	const timeout = 2 * time.Second
	d := newDaemonIn(t, dir, fmt.Sprintf("[nri]\nenable = true\nsocket_path = '%s'\nplugin_path = ''\nrequest_timeout = '%s'\n", socket, timeout))
	ctx := ctxT(t)
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("busybox:1"))}); err != nil {
		t.Fatal(err)
	}
	env := &envPlugin{synced: make(chan struct{})}
	startPlugin(t, socket, "env", "10", env, env.synced, nil)

	podCfg := podSandboxConfig("nri")
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string) string {
		t.Helper()
		r, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: name}, Image: spec(reg.Ref("busybox:1")), Command: []string{"sleep", "1000"}}})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return r.ContainerId
	}
	id := create("app")
	if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	res, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo $NRI_INJECTED"}, Timeout: 10})
	if err != nil || strings.TrimSpace(string(res.Stdout)) != "by-plugin-app" {
		t.Errorf("the container's NRI_INJECTED = %q (%v), want by-plugin-app", res.GetStdout(), err)
	}
	var bundle struct{ Annotations map[string]string }
	if b, err := os.ReadFile(filepath.Join(dir, "run", "containers", id, "config.json")); err != nil || json.Unmarshal(b, &bundle) != nil {
		t.Errorf("read the container's OCI spec: %v", err)
	} else if bundle.Annotations["example.com/nri-plugin"] != "env" {
		t.Errorf("OCI spec annotations = %v, want the plugin's", bundle.Annotations)
	}
	if _, err := d.Runtime.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	want := []string{"create app", "start app", "stop app", "remove app"}
	if got := env.Events(); !slices.Equal(got, want) {
		t.Errorf("plugin's events = %q, want %q", got, want)
	}

	// A plugin that never answers: creation waits for its timeout, then
	// goes on without it (the other plugin still adjusts), and it is
	// disconnected, so the next creation does not wait at all.
	hung := &hungPlugin{synced: make(chan struct{}), release: make(chan struct{}), closed: make(chan struct{})}
	var closeOnce sync.Once
	startPlugin(t, socket, "hung", "20", hung, hung.synced, func() { closeOnce.Do(func() { close(hung.closed) }) })
	t.Cleanup(func() { close(hung.release) })
	start := time.Now()
	slow := create("slow")
	delay := time.Since(start)
	t.Logf("creation with a plugin that never answers took %v (request timeout %v)", delay, timeout)
	// A bound far above the timeout: this checks "not stalled", not speed.
	if delay > timeout+15*time.Second {
		t.Errorf("creation took %v with a %v plugin timeout", delay, timeout)
	}
	select {
	case <-hung.closed:
	case <-time.After(10 * time.Second):
		t.Error("the daemon did not disconnect the plugin that timed out")
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: slow}); err != nil {
		t.Fatal(err)
	}
	res, err = d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: slow, Cmd: []string{"sh", "-c", "echo $NRI_INJECTED"}, Timeout: 10})
	if err != nil || strings.TrimSpace(string(res.Stdout)) != "by-plugin-slow" {
		t.Errorf("after the hung plugin: NRI_INJECTED = %q (%v)", res.GetStdout(), err)
	}
	start = time.Now()
	create("after")
	t.Logf("creation once the hung plugin is gone took %v", time.Since(start))

	if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	assertNoPodLeaks(t, d)
	assertNoContainerProcesses(t, d)
}
