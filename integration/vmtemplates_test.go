package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testVMTemplates: VM pods are clones of one template (the daemon's log
// says so), and two clones differ in what they draw from their RNG, in
// their NIC's MAC and in their hostname. A template whose device state is
// damaged is not restored: the next pod boots cold, and runs.
func testVMTemplates(t *testing.T, d *daemon, image string) {
	identity := func(name string) string {
		k := newPodKit(t, d, image, "vm", podSandboxConfig(name))
		ctr := k.run("id", nil, "sleep", "1000")
		out, _ := k.exec(ctr, "sh", "-c", "cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1; cat /sys/class/net/eth0/address; hostname")
		return out
	}
	a, b := identity("tpl-a"), identity("tpl-b")
	la, lb := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	if len(la) != 4 || len(lb) != 4 {
		t.Fatalf("identities:\n%s\n%s", a, b)
	}
	for i, what := range []string{"random uuid", "urandom bytes", "eth0 MAC", "hostname"} {
		if la[i] == lb[i] {
			t.Errorf("two clones have the same %s: %q", what, la[i])
		}
	}
	if la[3] != "tpl-a-host" {
		t.Errorf("hostname %q, want tpl-a-host", la[3])
	}
	// The daemon built the template at start: no pod of this daemon (the
	// earlier subtests' too) booted cold.
	if n := strings.Count(d.Logs(), "from_template=true"); n < 2 {
		t.Errorf("%d VM pods started from a template, want 2 at least", n)
	}
	if n := strings.Count(d.Logs(), "from_template=false"); n > 0 {
		t.Errorf("%d VM pods booted cold: the daemon did not build the template at start", n)
	}

	states, _ := filepath.Glob(filepath.Join(d.Root, "vm", "templates", "vm", "*", "state"))
	if len(states) != 1 {
		t.Fatalf("templates' device states: %v, want one", states)
	}
	if err := os.WriteFile(states[0], []byte("not a migration stream"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := identity("tpl-c"); !strings.Contains(out, "tpl-c-host") {
		t.Errorf("the pod after a damaged template: %q", out)
	}
	if !strings.Contains(d.Logs(), "vm template: restore failed; booting cold") {
		t.Error("no log line for the damaged template's fallback to a cold boot")
	}

	// A stale template (made for another kernel, initramfs, QEMU or
	// size: another key) is removed when the daemon starts, which builds
	// the current one anew; pods clone it.
	templates := filepath.Join(d.Root, "vm", "templates", "vm")
	stale := filepath.Join(templates, "00000000000stale")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "template.json"), []byte(`{"Key":"00000000000stale"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	d.Start()
	waitVMTemplate(t, d)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale template is still there: %v", err)
	}
	if out := identity("tpl-d"); !strings.Contains(out, "tpl-d-host") {
		t.Errorf("the pod after a restart: %q", out)
	}
	if !strings.Contains(d.Logs(), "from_template=true") || strings.Contains(d.Logs(), "from_template=false") {
		t.Error("after a restart, the pod did not start from the rebuilt template")
	}
}
