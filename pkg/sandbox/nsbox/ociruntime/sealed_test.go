package ociruntime

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"golang.org/x/sys/unix"
)

// sealsOf opens path (following links) and returns its seals: what
// runc's and crun's cloned_binary.c read from /proc/self/exe.
func sealsOf(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatalf("F_GET_SEALS %s: %v", path, err)
	}
	return seals
}

// A sealed copy runs as the binary, under its name, cannot be written, and
// follows a binary that is replaced; a binary that is gone runs (fails)
// from its path.
func TestSealedExe(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "crun")
	script := func(out string) {
		t.Helper()
		tmp := bin + ".tmp"
		if err := os.WriteFile(tmp, []byte("#!/bin/sh\necho "+out+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, bin); err != nil {
			t.Fatal(err)
		}
	}
	script("one")
	s, err := newSealedExe(bin, filepath.Join(dir, "exe"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p := s.path(bin)
	if p == bin || filepath.Base(p) != "crun" {
		t.Fatalf("path = %s, want a link named crun to the sealed copy", p)
	}
	if got := sealsOf(t, p); got != sealedSeals {
		t.Errorf("seals = %#x, want %#x", got, sealedSeals)
	}
	if err := os.WriteFile(p, []byte("overwritten"), 0o755); err == nil {
		t.Error("the sealed copy could be written")
	}
	run := func(p string) string {
		t.Helper()
		out, err := exec.Command(p).CombinedOutput()
		if err != nil {
			t.Fatalf("run %s: %v: %s", p, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(p); got != "one" {
		t.Errorf("the copy printed %q", got)
	}
	if again := s.path(bin); again != p || len(s.copies) != 1 {
		t.Errorf("an unchanged binary was copied again (%s, %d copies)", again, len(s.copies))
	}
	script("two") // an upgrade
	if got := run(s.path(bin)); got != "two" || len(s.copies) != 2 {
		t.Errorf("after the binary changed the copy printed %q (%d copies)", got, len(s.copies))
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if got := s.path(bin); got != bin {
		t.Errorf("a missing binary: path = %s, want %s", got, bin)
	}
	var none *sealedExe
	if got := none.path(bin); got != bin {
		t.Errorf("no sealed copy: path = %s", got)
	}
}

// crun runs from the sealed copy, which it takes as already cloned: one
// exec per call instead of two.
func TestCrunRunsSealed(t *testing.T) {
	testutil.RequireRoot(t)
	crun := testutil.RequireBinary(t, "crun")
	conmon := testutil.RequireBinary(t, "conmon")
	trace := testutil.RequireBinary(t, "strace") // counts crun's execs
	dir := t.TempDir()
	r, err := New(Config{Binary: crun, Conmon: conmon, Root: filepath.Join(dir, "root"), StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	cmd := r.command(t.Context(), "--version")
	if cmd.Path == crun || sealsOf(t, cmd.Path) != sealedSeals {
		t.Fatalf("crun runs from %s, not a sealed copy", cmd.Path)
	}
	out, err := exec.Command(trace, "-f", "-e", "trace=execve,execveat", "-o", filepath.Join(dir, "trace"), cmd.Path, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "crun version") {
		t.Fatalf("crun --version from the copy: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "trace"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "execve"); n != 1 {
		t.Errorf("crun executed %d times, want once (it copied itself again):\n%s", n, b)
	}
}
