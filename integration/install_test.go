package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
)

func TestMakeInstall(t *testing.T) {
	testutil.RequireBinary(t, "make")
	dest := t.TempDir()
	out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/usr").CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/cradle.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Delegate=yes", "KillMode=process", "Type=notify", "ExecStart=/usr/bin/cradle serve --config /etc/cradle/cradle.toml"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if out, err := exec.Command(filepath.Join(dest, "usr/bin/cradle"), "version").CombinedOutput(); err != nil {
		t.Errorf("installed binary: %v\n%s", err, out)
	}
	cfg, _ := os.ReadFile(filepath.Join(dest, "etc/cradle/cradle.toml"))
	golden, _ := os.ReadFile("../configs/cradle.toml")
	if string(cfg) != string(golden) {
		t.Error("installed config differs from configs/cradle.toml")
	}
	// An operator's config is never overwritten.
	os.WriteFile(filepath.Join(dest, "etc/cradle/cradle.toml"), []byte("# mine\n"), 0o644)
	if out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/usr").CombinedOutput(); err != nil {
		t.Fatalf("second make install: %v\n%s", err, out)
	}
	if cfg, _ := os.ReadFile(filepath.Join(dest, "etc/cradle/cradle.toml")); string(cfg) != "# mine\n" {
		t.Error("make install overwrote an existing config")
	}
}

// Under systemd (Type=notify) the daemon says READY=1 once it serves.
func TestNotifiesSystemdWhenReady(t *testing.T) {
	d := newDaemon(t, "")
	d.Stop()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d.env = []string{"NOTIFY_SOCKET=" + sock}
	d.Start()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Errorf("notify socket got %q, %v", buf[:n], err)
	}
}

// `make deb` builds a package dpkg accepts: the binary, the unit with the
// paths it installs to, and the default configuration as a conffile, so an
// operator's edits survive an upgrade.
func TestMakeDeb(t *testing.T) {
	testutil.RequireBinary(t, "make")
	testutil.RequireBinary(t, "dpkg-deb")
	deb := filepath.Join(t.TempDir(), "cradle.deb")
	if out, err := exec.Command("make", "-C", "..", "deb", "DEB="+deb).CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	info, err := exec.Command("dpkg-deb", "--info", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --info: %v\n%s", err, info)
	}
	for _, want := range []string{"Package: cradle", "Version: 0.1.0+git", "Depends: runc | crun, conmon", "conffiles"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("package info lacks %q:\n%s", want, info)
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "--raw-extract", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --raw-extract: %v\n%s", err, out)
	}
	if conf, _ := os.ReadFile(filepath.Join(dir, "DEBIAN/conffiles")); strings.TrimSpace(string(conf)) != "/etc/cradle/cradle.toml" {
		t.Errorf("conffiles = %q", conf)
	}
	unit, _ := os.ReadFile(filepath.Join(dir, "lib/systemd/system/cradle.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/cradle serve --config /etc/cradle/cradle.toml") {
		t.Errorf("unit:\n%s", unit)
	}
	if out, err := exec.Command(filepath.Join(dir, "usr/bin/cradle"), "version").CombinedOutput(); err != nil {
		t.Errorf("packaged binary: %v\n%s", err, out)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, "etc/cradle/cradle.toml"))
	golden, _ := os.ReadFile("../configs/cradle.toml")
	if string(cfg) != string(golden) {
		t.Error("packaged config differs from configs/cradle.toml")
	}
}

// TestMakeDepsInstallWhatItRuns: every tool the deps and deps-vm recipes and
// the tests run comes from a package they install or from one every Debian
// system has (Priority: required). kmod's depmod and cpio are "important" only,
// missing from minimal images: deps-vm once stopped at depmod on a fresh
// machine, and vmbox's TestCPIOReadBack failed there for want of cpio.
func TestMakeDepsInstallWhatItRuns(t *testing.T) {
	testutil.RequireBinary(t, "make")
	testutil.RequireBinary(t, "dpkg-query")
	printer := filepath.Join(t.TempDir(), "print.mk")
	if err := os.WriteFile(printer, []byte("print-packages:\n\t@echo $(DEB_PACKAGES) $(VM_PACKAGES)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("make", "-s", "-C", "..", "-f", "Makefile", "-f", printer, "print-packages").CombinedOutput()
	if err != nil {
		t.Fatalf("make print-packages: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		listed[p] = true
	}
	for _, tool := range []string{"depmod", "cpio", "dpkg-deb", "apt-get", "apt-cache", "dpkg-query"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Errorf("%s: %v", tool, err)
			continue
		}
		if resolved, err := filepath.EvalSymlinks(path); err == nil {
			path = resolved
		}
		owner, err := exec.Command("dpkg-query", "-S", path).Output()
		if err != nil {
			// usrmerge: dpkg may know the file under /bin or /sbin.
			owner, err = exec.Command("dpkg-query", "-S", strings.TrimPrefix(path, "/usr")).Output()
		}
		if err != nil {
			t.Errorf("%s (%s): no package owns it", tool, path)
			continue
		}
		pkg, _, _ := strings.Cut(strings.TrimSpace(string(owner)), ":")
		prio, _ := exec.Command("dpkg-query", "-W", "-f=${Priority}", pkg).Output()
		if !listed[pkg] && string(prio) != "required" {
			t.Errorf("make deps-vm runs %s from package %s (priority %s), which it does not install", tool, pkg, prio)
		}
	}
}
