package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamPod is a running pod with containers for the streaming tests.
type streamPod struct {
	d     *daemon
	pod   string
	ids   map[string]string // container name → ID
	podCf *runtime.PodSandboxConfig
}

func startStreamPod(t *testing.T, d *daemon, image string, ctrs map[string]*runtime.ContainerConfig) *streamPod {
	t.Helper()
	ctx := ctxT(t)
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(image)}); err != nil {
		t.Fatal(err)
	}
	p := &streamPod{d: d, ids: map[string]string{}, podCf: podSandboxConfig("stream")}
	p.podCf.LogDirectory = filepath.Join(d.dir, "logs")
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: p.podCf})
	if err != nil {
		t.Fatal(err)
	}
	p.pod = pod.PodSandboxId
	for name, cfg := range ctrs {
		cfg.Metadata, cfg.Image, cfg.LogPath = &runtime.ContainerMetadata{Name: name}, spec(image), name+".log"
		c, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.pod, Config: cfg, SandboxConfig: p.podCf})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		p.ids[name] = c.ContainerId
	}
	return p
}

// remove removes the pod and asserts that nothing of it, and no exec
// process, is left.
func (p *streamPod) remove(t *testing.T) {
	t.Helper()
	if _, err := p.d.Runtime.RemovePodSandbox(ctxT(t), &runtime.RemovePodSandboxRequest{PodSandboxId: p.pod}); err != nil {
		t.Fatal(err)
	}
	assertNoPodLeaks(t, p.d)
	assertNoContainerProcesses(t, p.d)
	assertNoProcessNamed(t, "sleep\x00100")
}

// assertNoProcessNamed fails if a process's cmdline starts with prefix.
func assertNoProcessNamed(t *testing.T, prefix string) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(b), prefix) {
			t.Errorf("process %s left: %q", e.Name(), b)
		}
	}
}

// execURL asks for an exec session.
func (p *streamPod) execURL(t *testing.T, ctr string, tty, stdin bool, cmd ...string) string {
	t.Helper()
	resp, err := p.d.Runtime.Exec(ctxT(t), &runtime.ExecRequest{ContainerId: p.ids[ctr], Cmd: cmd, Tty: tty, Stdin: stdin, Stdout: true, Stderr: !tty})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if !strings.HasPrefix(resp.Url, "http://127.0.0.1:") {
		t.Fatalf("Exec URL %q is not on loopback", resp.Url)
	}
	return resp.Url
}

// executor speaks SPDY or WebSocket to u.
func executor(t *testing.T, proto, u string) remotecommand.Executor {
	t.Helper()
	var e remotecommand.Executor
	var err error
	switch proto {
	case "spdy":
		pu, perr := url.Parse(u)
		if perr != nil {
			t.Fatal(perr)
		}
		e, err = remotecommand.NewSPDYExecutor(&restclient.Config{}, "POST", pu)
	case "websocket":
		// The CRI streaming server speaks WebSocket up to v4 (kubelet and
		// the API server speak v5 to clients and SPDY to the runtime).
		e, err = remotecommand.NewWebSocketExecutorForProtocols(&restclient.Config{}, "GET", u, "v4.channel.k8s.io")
	}
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// exitCode is the exit code in a remotecommand error (0 for none).
func exitCode(err error) (int, bool) {
	if err == nil {
		return 0, true
	}
	var ee interface{ ExitStatus() int }
	if errors.As(err, &ee) {
		return ee.ExitStatus(), true
	}
	return -1, false
}

// sizeQueue hands the client's terminal sizes to remotecommand.
type sizeQueue struct {
	ch  chan remotecommand.TerminalSize
	ctx context.Context
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case s := <-q.ch:
		return &s
	case <-q.ctx.Done():
		return nil
	}
}

func TestStreaming(t *testing.T) {
	testutil.RequireBinary(t, "conmon")
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	for _, handler := range []string{"runc", "crun"} {
		t.Run(handler, func(t *testing.T) {
			testutil.RequireBinary(t, handler)
			testStreaming(t, newDaemon(t, fmt.Sprintf("[runtime]\ndefault_handler = %q\n", handler)), reg.Ref("busybox:1"), 100)
		})
	}
}

func testStreaming(t *testing.T, d *daemon, image string, concurrent int) {
	p := startStreamPod(t, d, image, map[string]*runtime.ContainerConfig{
		"main":   {Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"}},
		"attach": {Command: []string{"sh", "-c", "while read l; do echo got $l; echo err $l >&2; done"}, Stdin: true},
		"tty":    {Command: []string{"sh"}, Stdin: true, Tty: true},
		"web": {Command: []string{"sh", "-c", "mkdir -p /tmp/a /tmp/b && echo page a > /tmp/a/index.html && echo page b > /tmp/b/index.html && " +
			"busybox httpd -p 8080 -h /tmp/a && exec busybox httpd -f -p 8081 -h /tmp/b"}},
	})
	for _, proto := range []string{"spdy", "websocket"} {
		t.Run("exec/"+proto, func(t *testing.T) { testExec(t, p, proto) })
		t.Run("exec-tty/"+proto, func(t *testing.T) { testExecTTY(t, p, proto) })
		t.Run("attach/"+proto, func(t *testing.T) { testAttach(t, p, proto) })
	}
	t.Run("attach-tty", func(t *testing.T) { testAttachTTY(t, p) })
	t.Run("disconnect", func(t *testing.T) { testExecDisconnect(t, p) })
	t.Run("port-forward", func(t *testing.T) { testPortForward(t, p) })
	t.Run("bad-input", func(t *testing.T) { testStreamingBadInput(t, p) })
	t.Run("concurrent", func(t *testing.T) { testConcurrentExecs(t, p, concurrent) })
	p.remove(t)
}

func testExec(t *testing.T, p *streamPod, proto string) {
	ctx := ctxT(t)
	var out, errOut bytes.Buffer
	err := executor(t, proto, p.execURL(t, "main", false, false, "sh", "-c", "echo out; echo err >&2; exit 3")).
		StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	if code, ok := exitCode(err); !ok || code != 3 || out.String() != "out\n" || errOut.String() != "err\n" {
		t.Errorf("exec = %v (code %d), stdout %q, stderr %q; want code 3, out, err", err, code, out.String(), errOut.String())
	}
	if proto == "websocket" {
		return // v4 over WebSocket cannot half-close stdin (v5 can): no EOF for cat
	}
	// stdin piped through, EOF passed on.
	in := strings.Repeat("piped through stdin\n", 5000)
	out.Reset()
	err = executor(t, proto, p.execURL(t, "main", false, true, "cat")).
		StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(in), Stdout: &out, Stderr: &errOut})
	if err != nil || out.String() != in {
		t.Errorf("cat = %v, %d bytes back of %d", err, out.Len(), len(in))
	}
}

func testExecTTY(t *testing.T, p *streamPod, proto string) {
	ctx := ctxT(t)
	sizes := &sizeQueue{ch: make(chan remotecommand.TerminalSize, 2), ctx: ctx}
	sizes.ch <- remotecommand.TerminalSize{Width: 100, Height: 30}
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- executor(t, proto, p.execURL(t, "main", true, true, "sh", "-c", `[ -t 0 ] && echo a tty; busybox stty size; while read x; do [ "$x" = q ] && exit 5; busybox stty size; done`)).
			StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdinR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
	}()
	waitFor(t, "the first size", func() bool { return strings.Contains(out.String(), "30 100") })
	sizes.ch <- remotecommand.TerminalSize{Width: 120, Height: 40}
	// The resize travels apart from stdin: ask for the size until it shows.
	waitFor(t, "the new size", func() bool {
		if strings.Contains(out.String(), "40 120") {
			return true
		}
		_, _ = stdinW.Write([]byte("go\r"))
		time.Sleep(100 * time.Millisecond)
		return false
	})
	if _, err := stdinW.Write([]byte("q\r")); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if code, _ := exitCode(err); code != 5 || !strings.Contains(out.String(), "a tty\r\n") || !strings.Contains(out.String(), "40 120") {
		t.Errorf("tty exec = %v, output %q; want code 5, a tty, then 40 120", err, out.String())
	}
}

// attachSession attaches to ctr until the returned cancel is called.
func attachSession(t *testing.T, p *streamPod, proto, ctr string, tty bool, o remotecommand.StreamOptions) (context.CancelFunc, <-chan error) {
	t.Helper()
	resp, err := p.d.Runtime.Attach(ctxT(t), &runtime.AttachRequest{ContainerId: p.ids[ctr], Stdin: true, Stdout: true, Stderr: !tty, Tty: tty})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() { done <- executor(t, proto, resp.Url).StreamWithContext(ctx, o) }()
	return cancel, done
}

func testAttach(t *testing.T, p *streamPod, proto string) {
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	var out, errOut testutil.Buffer
	detach, done := attachSession(t, p, proto, "attach", false, remotecommand.StreamOptions{Stdin: stdinR, Stdout: &out, Stderr: &errOut})
	word := "hello-" + proto
	waitFor(t, "the attached container's answer", func() bool {
		go func() { _, _ = stdinW.Write([]byte(word + "\n")) }()
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(out.String(), "got "+word) && strings.Contains(errOut.String(), "err "+word)
	})
	detach()
	<-done
	st, err := p.d.Runtime.ContainerStatus(ctxT(t), &runtime.ContainerStatusRequest{ContainerId: p.ids["attach"]})
	if err != nil || st.Status.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after detaching: %v, %v; want it running", st.GetStatus().GetState(), err)
	}
}

func testAttachTTY(t *testing.T, p *streamPod) {
	ctx := ctxT(t)
	sizes := &sizeQueue{ch: make(chan remotecommand.TerminalSize, 1), ctx: ctx}
	sizes.ch <- remotecommand.TerminalSize{Width: 111, Height: 33}
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	var out testutil.Buffer
	detach, done := attachSession(t, p, "spdy", "tty", true, remotecommand.StreamOptions{Stdin: stdinR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
	waitFor(t, "the shell's answer on its terminal", func() bool {
		go func() { _, _ = stdinW.Write([]byte("busybox stty size\r")) }()
		time.Sleep(200 * time.Millisecond)
		return strings.Contains(out.String(), "33 111")
	})
	detach()
	<-done
}

// A client that goes away ends its exec's process.
func testExecDisconnect(t *testing.T, p *streamPod) {
	ctx, cancel := context.WithCancel(ctxT(t))
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- executor(t, "spdy", p.execURL(t, "main", false, false, "sh", "-c", "echo started; exec sleep 1001")).
			StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: io.Discard})
	}()
	waitFor(t, "the exec to start", func() bool { return strings.Contains(out.String(), "started") })
	cancel()
	<-done
	waitFor(t, "the exec's process to end", func() bool {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); string(b) == "sleep\x001001\x00" {
				return false
			}
		}
		return true
	})
}

// forward starts a port-forward session to ports of the pod and returns
// the local ports.
func forward(t *testing.T, p *streamPod, ports ...string) ([]portforward.ForwardedPort, *testutil.Buffer, func()) {
	t.Helper()
	var want []int32
	for _, s := range ports {
		var n int32
		fmt.Sscanf(strings.TrimPrefix(s, "0:"), "%d", &n)
		want = append(want, n)
	}
	resp, err := p.d.Runtime.PortForward(ctxT(t), &runtime.PortForwardRequest{PodSandboxId: p.pod, Port: want})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	u, _ := url.Parse(resp.Url)
	transport, upgrader, err := spdy.RoundTripperFor(&restclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	errOut := &testutil.Buffer{}
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, ports, stop, ready, io.Discard, errOut)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("ForwardPorts: %v", err)
	}
	got, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	return got, errOut, func() { close(stop); <-done }
}

func httpGet(port uint16) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func testPortForward(t *testing.T, p *streamPod) {
	waitFor(t, "the pod's web servers", func() bool {
		res, err := p.d.Runtime.ExecSync(ctxT(t), &runtime.ExecSyncRequest{ContainerId: p.ids["web"], Cmd: []string{"sh", "-c", "wget -qO- 127.0.0.1:8080 && wget -qO- 127.0.0.1:8081"}})
		return err == nil && res.ExitCode == 0
	})
	ports, _, stop := forward(t, p, "0:8080", "0:8081")
	// Several ports, several streams at once.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			fp, want := ports[i%2], []string{"page a\n", "page b\n"}[i%2]
			if got, err := httpGet(fp.Local); err != nil || got != want {
				t.Errorf("GET through %d -> %d = %q, %v; want %q", fp.Local, fp.Remote, got, err, want)
			}
		})
	}
	wg.Wait()
	stop()
	// Nothing listens: the client sees the refusal, the server goes on.
	ports, errOut, stop := forward(t, p, "0:9999")
	if got, err := httpGet(ports[0].Local); err == nil {
		t.Errorf("GET through a port nothing listens on = %q, want an error", got)
	}
	stop()
	_ = errOut
	ports, _, stop = forward(t, p, "0:8080")
	if got, err := httpGet(ports[0].Local); err != nil || got != "page a\n" {
		t.Errorf("GET after a refused forward = %q, %v", got, err)
	}
	stop()
}

func testStreamingBadInput(t *testing.T, p *streamPod) {
	ctx := ctxT(t)
	if _, err := p.d.Runtime.Exec(ctx, &runtime.ExecRequest{ContainerId: "feedface", Cmd: []string{"true"}, Stdout: true}); status.Code(err) != codes.NotFound {
		t.Errorf("Exec into an unknown container: %v", err)
	}
	if _, err := p.d.Runtime.Attach(ctx, &runtime.AttachRequest{ContainerId: "feedface", Stdout: true}); status.Code(err) != codes.NotFound {
		t.Errorf("Attach to an unknown container: %v", err)
	}
	if _, err := p.d.Runtime.PortForward(ctx, &runtime.PortForwardRequest{PodSandboxId: "feedface", Port: []int32{80}}); status.Code(err) != codes.NotFound {
		t.Errorf("PortForward to an unknown pod: %v", err)
	}
	if _, err := p.d.Runtime.Exec(ctx, &runtime.ExecRequest{ContainerId: p.ids["main"], Stdout: true}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Exec without a command: %v", err)
	}
	// A URL is good for one session.
	u := p.execURL(t, "main", false, false, "true")
	if err := executor(t, "spdy", u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := executor(t, "spdy", u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard}); err == nil {
		t.Error("a reused URL was accepted")
	}
	// A stopped container.
	if _, err := p.d.Runtime.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: p.ids["tty"], Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.d.Runtime.Exec(ctx, &runtime.ExecRequest{ContainerId: p.ids["tty"], Cmd: []string{"true"}, Stdout: true}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Exec into a stopped container: %v", err)
	}
	if _, err := p.d.Runtime.Attach(ctx, &runtime.AttachRequest{ContainerId: p.ids["tty"], Stdout: true}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Attach to a stopped container: %v", err)
	}
}

func testConcurrentExecs(t *testing.T, p *streamPod, n int) {
	ctx := ctxT(t)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var out bytes.Buffer
			err := executor(t, "spdy", p.execURL(t, "main", false, false, "sh", "-c", "echo exec $0; exit $(($0 % 7))", fmt.Sprint(i))).
				StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: io.Discard})
			if code, ok := exitCode(err); !ok || code != i%7 || out.String() != fmt.Sprintf("exec %d\n", i) {
				t.Errorf("exec %d = %v (code %d), %q", i, err, code, out.String())
			}
		})
	}
	wg.Wait()
	t.Logf("%d concurrent execs took %v", n, time.Since(start))
}
