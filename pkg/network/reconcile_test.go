package network

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/google/go-cmp/cmp"
)

// Random sequences of desired pod sets: pods are set up and "forgotten"
// (the daemon loses track of them), then Reconcile(desired) must leave the
// fake host with exactly the desired pods' links, leases, rules and netns.
func TestReconcileConverges(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	seed := uint64(20261123)
	rng := rand.New(rand.NewPCG(seed, seed))
	universe := make([]string, 10)
	for i := range universe {
		universe[i] = fmt.Sprintf("rp-%d", i)
	}
	port := func(id string) PortMapping {
		var n int32
		_, _ = fmt.Sscanf(id, "rp-%d", &n)
		return PortMapping{Protocol: "tcp", ContainerPort: 80, HostPort: 20000 + n}
	}
	up := map[string]bool{}
	for round := range 25 {
		// Bring up a random set (a superset of nothing in particular).
		for _, id := range universe {
			if rng.IntN(2) == 0 && !up[id] {
				e.pod(m, id, port(id))
				up[id] = true
			}
		}
		var desired []string
		for _, id := range universe {
			if up[id] && rng.IntN(3) > 0 {
				desired = append(desired, id)
			}
		}
		// A restarted daemon reconciles, sometimes with a fresh Manager.
		rm := m
		if rng.IntN(2) == 0 {
			rm = e.manager()
		}
		if err := rm.Reconcile(context.Background(), desired); err != nil {
			t.Fatalf("round %d (seed %d): Reconcile: %v", round, seed, err)
		}
		rules := map[string][]string{}
		for _, id := range desired {
			rules[id] = []string{hostPortRule{pod: id, proto: "tcp", port: port(id).HostPort}.tag()}
		}
		if diff := cmp.Diff(e.expected(desired, rules, 1), e.snapshot()); diff != "" {
			t.Fatalf("round %d (seed %d): host did not converge to %v (-want +got):\n%s", round, seed, desired, diff)
		}
		up = map[string]bool{}
		for _, id := range desired {
			up[id] = true
		}
	}
	if err := m.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	assertNoLeaks(t, e)
}

// crashEnv names the environment of the crash helper process.
const crashEnv = "CRADLE_NETWORK_CRASH_HELPER"

// TestMain doubles as the crash helper: TestCrashDuringSetup runs the test
// binary again with crashEnv set, to be killed with SIGKILL mid-Setup.
func TestMain(m *testing.M) {
	if spec := os.Getenv(crashEnv); spec != "" {
		err := crashHelper(spec)
		fmt.Fprintf(os.Stderr, "crash helper returned instead of being killed: %v\n", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// crashHelper runs Setup and kills itself at the named step.
// spec: root|state|hostns|bridge|subnet|step|mode|cni_conf_dir|cni_bin_dir
func crashHelper(spec string) error {
	f := strings.Split(spec, "|")
	cfg := config.Default().Network
	cfg.Bridge, cfg.Subnet = f[3], f[4]
	cfg.Mode, cfg.CNIConfDir, cfg.CNIBinDirs = f[6], f[7], []string{f[8]}
	m, err := New(context.Background(), cfg, f[0], f[1], quietLog(), WithHostNetNS(f[2]))
	if err != nil {
		return err
	}
	m.failAt = func(step string) error {
		if step == f[5] {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	ns, err := NewNetNS(m.NetNSDir(), "crashpod")
	if err != nil {
		return err
	}
	_, err = m.Setup(context.Background(), PodNetwork{PodID: "crashpod", NetNSPath: ns,
		PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}}})
	return err
}

// kill -9 at every step of Setup, then a new Manager + Reconcile(live=[])
// must leave no veth, rule, lease, record or netns.
func TestCrashDuringSetup(t *testing.T) {
	e := newEnv(t, nil)
	e.manager() // bridge and table exist, as after a first start
	for i, step := range []string{"record", "lease", "veth", "address", "hostports"} {
		t.Run(step, func(t *testing.T) {
			crash(t, e, step)
			before := e.snapshot()
			if !slices.Contains(before.Records, "crashpod.json") || !slices.Contains(before.NetNS, "crashpod") {
				t.Fatalf("crash left no record or netns to recover from: %+v", before)
			}
			// What each step had made when the process died.
			if made := [][]string{before.Leases, before.Veths, before.Veths, before.Rules}; i > 0 && len(made[i-1]) == 0 {
				t.Fatalf("crash at %s left nothing to clean: %+v", step, before)
			}
			m := e.manager()
			if err := m.Reconcile(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			assertNoLeaks(t, e)
			if got := testutilMounts(t, filepath.Join(e.state, "netns")); len(got) > 0 {
				t.Errorf("netns mounts left: %v", got)
			}
		})
	}
}

// crash runs Setup of pod "crashpod" in a child process that SIGKILLs
// itself at step.
func crash(t *testing.T, e *testEnv, step string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashEnv+"="+strings.Join([]string{
		e.root, e.state, e.hostNS, e.cfg.Bridge, e.cfg.Subnet, step, e.cfg.Mode, e.cfg.CNIConfDir, cniBinDir}, "|"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed at %s: %v\n%s", step, err, out)
	}
}
