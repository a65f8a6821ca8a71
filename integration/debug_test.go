package integration

import (
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The debug aids of a running daemon: pprof on the configured loopback
// address, a goroutine dump on SIGUSR1, and each RPC's request ID on the
// engine's and the image store's log lines of that RPC.
func TestDebugAids(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	d := newDaemon(t, "[debug]\naddress = \""+addr+"\"\n")
	ctx := ctxT(t)

	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("pprof: %s\n%.300s", resp.Status, body)
	}

	if err := d.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d, "goroutine stacks (SIGUSR1)")
	if !strings.Contains(d.Logs(), "runServer") {
		t.Errorf("the stack dump lacks the serving goroutine")
	}

	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("busybox:1"))}); err != nil {
		t.Fatal(err)
	}
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podSandboxConfig("debug")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ msg, rpc string }{
		{`msg="pulled image"`, "/runtime.v1.ImageService/PullImage"},
		{`msg="pod sandbox running"`, "/runtime.v1.RuntimeService/RunPodSandbox"},
		{`msg="pod sandbox removed"`, "/runtime.v1.RuntimeService/RemovePodSandbox"},
	} {
		waitLog(t, d, tt.msg) // the daemon's output reaches d.Logs() a little later
		line := logLine(d.Logs(), tt.msg)
		m := regexp.MustCompile(` rpc=(\S+) req=(\w+)`).FindStringSubmatch(line)
		if m == nil || m[1] != tt.rpc {
			t.Errorf("engine line does not name its RPC %s:\n%.2000s", tt.rpc, line)
			continue
		}
		// The interceptor's own line of that call has the same ID.
		waitLog(t, d, `msg="rpc done" rpc=`+tt.rpc+" req="+m[2])
	}
}

func waitLog(t *testing.T, d *daemon, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.Logs(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the daemon's log", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logLine is the first line of logs holding s.
func logLine(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
