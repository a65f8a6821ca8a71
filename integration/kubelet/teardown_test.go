package kubelet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupMounts returns the mount points of every cgroup hierarchy (v1 and
// the v2 one of a hybrid host).
func cgroupMounts(t testing.TB) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root mountpoint opts [optional...] - fstype source superopts
		line := sc.Text()
		fields := strings.Fields(line)
		_, post, ok := strings.Cut(line, " - ")
		if !ok || len(fields) < 5 {
			continue
		}
		if fs := strings.Fields(post); len(fs) > 0 && (fs[0] == "cgroup" || fs[0] == "cgroup2") {
			out = append(out, fields[4])
		}
	}
	return out
}

// makeCgroupRoot creates kubelet's cgroupRoot in every hierarchy (kubelet
// refuses a cgroupRoot that does not exist).
func makeCgroupRoot(t testing.TB) {
	t.Helper()
	for _, m := range cgroupMounts(t) {
		if err := os.MkdirAll(filepath.Join(m, cgroupRoot), 0o755); err != nil {
			t.Fatalf("make cgroup root: %v", err)
		}
	}
}

// cgroupDirs returns the cgroup directories below cgroupRoot whose name
// contains one of keys (all of them when keys is empty).
func cgroupDirs(t testing.TB, keys ...string) []string {
	t.Helper()
	var out []string
	for _, m := range cgroupMounts(t) {
		root := filepath.Join(m, cgroupRoot)
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() || p == root {
				return nil
			}
			if len(keys) == 0 || containsAny(d.Name(), keys) {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// removeCgroupRoot removes cgroupRoot bottom-up in every hierarchy; what
// cannot be removed (a process left in it) is returned.
func removeCgroupRoot(t testing.TB) []string {
	t.Helper()
	var left []string
	for _, m := range cgroupMounts(t) {
		root := filepath.Join(m, cgroupRoot)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, d := range dirs {
			if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
				left = append(left, d+": "+err.Error())
			}
		}
	}
	return left
}

func containsAny(s string, keys []string) bool {
	for _, k := range keys {
		if k != "" && strings.Contains(s, k) {
			return true
		}
	}
	return false
}

// teardown takes every pod away (kubelet first, then what cradle still
// has), stops both daemons and removes the network, cgroups and the
// directory. What had to be forced is reported as a failure.
func (e *env) teardown() {
	t := e.t
	if e.kubelet != nil && e.kubelet.alive() {
		ents, _ := os.ReadDir(e.path("manifests"))
		for _, m := range ents {
			_ = os.Remove(e.path("manifests", m.Name()))
		}
		if e.cradle != nil && e.cradle.alive() {
			err := waitFor(90*time.Second, time.Second, func() error {
				if !e.kubelet.alive() {
					return nil // reported below
				}
				return e.noReadySandboxes()
			})
			if !e.kubelet.alive() {
				t.Errorf("teardown: kubelet exited while stopping its pods:\n%s", e.kubelet.tail(30))
			} else if err != nil {
				t.Errorf("teardown: kubelet did not stop its pods: %v", err)
			}
		}
		e.kubelet.stop(syscall.SIGTERM, 20*time.Second)
	}
	if e.cradle != nil && e.cradle.alive() {
		e.removeAllPods()
		e.cradle.stop(syscall.SIGTERM, 30*time.Second)
	}
	if e.conn != nil {
		_ = e.conn.Close()
	}
	removeNetwork(t)
	if left := removeCgroupRoot(t); len(left) > 0 {
		t.Errorf("teardown: cgroups left: %v", left)
	}
	if m := testutil.Mounts(t, e.dir); len(m) > 0 {
		t.Errorf("teardown: mounts left under %s: %v", e.dir, m)
		sort.Sort(sort.Reverse(sort.StringSlice(m)))
		for _, p := range m {
			_ = unix.Unmount(p, unix.MNT_DETACH)
		}
	}
	if t.Failed() || os.Getenv("CRADLE_E2E_KEEP") == "1" {
		t.Logf("kept %s (logs: cradle.log, kubelet.log)\ncradle log tail:\n%s\nkubelet log tail:\n%s",
			e.dir, tailOf(e.cradle, 40), tailOf(e.kubelet, 60))
		return
	}
	if len(testutil.Mounts(t, e.dir)) == 0 {
		_ = os.RemoveAll(e.dir)
	}
}

func tailOf(p *proc, n int) string {
	if p == nil {
		return ""
	}
	return p.tail(n)
}

// noReadySandboxes fails while cradle still has a Ready pod kubelet made.
func (e *env) noReadySandboxes() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := e.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
		State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}}})
	if err != nil {
		return err
	}
	if n := len(r.GetItems()); n > 0 {
		return fmt.Errorf("%d pods still Ready, among them %s", n, r.GetItems()[0].GetMetadata().GetName())
	}
	return nil
}

// removeAllPods stops and removes whatever pods cradle still has.
func (e *env) removeAllPods() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := e.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		e.t.Errorf("teardown: list pods: %v", err)
		return
	}
	for _, p := range r.GetItems() {
		if _, err := e.cri.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			e.t.Errorf("teardown: stop pod %s: %v", p.GetMetadata().GetName(), err)
		}
		if _, err := e.cri.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			e.t.Errorf("teardown: remove pod %s: %v", p.GetMetadata().GetName(), err)
		}
	}
}

// removeNetwork takes away the test's bridge and cradle's nftables table of
// that bridge (a real node keeps both across restarts).
func removeNetwork(t testing.TB) {
	t.Helper()
	if l, err := netlink.LinkByName(bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Errorf("remove bridge: %v", err)
		}
	}
	c, err := nftables.New()
	if err != nil {
		t.Errorf("nftables: %v", err)
		return
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Errorf("list nftables tables: %v", err)
		return
	}
	for _, tb := range tables {
		if tb.Name == network.TableName(bridge) {
			c.DelTable(tb)
		}
	}
	if err := c.Flush(); err != nil {
		t.Errorf("remove nftables table: %v", err)
	}
}
