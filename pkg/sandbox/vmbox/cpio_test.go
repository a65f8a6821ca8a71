package vmbox

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
)

func TestCPIOLayout(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.Dir("dev", 0o755)
	c.File("init", 0o755, 5, strings.NewReader("hello"))
	c.Symlink("sbin", "init")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b)%4 != 0 {
		t.Errorf("archive length %d is not 4-aligned", len(b))
	}
	// First header: magic, inode 1, mode 040755, nlink 2, name size 4.
	want := "070701" + "00000001" + "000041ED" + "00000000" + "00000000" + "00000002" + "00000000" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000004" + "00000000" + "dev\x00"
	if got := string(b[:len(want)]); got != want {
		t.Errorf("first entry\n got %q\nwant %q", got, want)
	}
	if !bytes.Contains(b, []byte("init\x00\x00hello\x00\x00\x00")) {
		t.Error("file entry not padded as newc requires")
	}
	if !bytes.HasSuffix(bytes.TrimRight(b, "\x00"), []byte("TRAILER!!!")) {
		t.Error("no trailer")
	}
}

// cpio(1) reads the archive back with the same content.
func TestCPIOReadBack(t *testing.T) {
	cpio := testutil.RequireBinary(t, "cpio")
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.Dir("lib", 0o755)
	c.Dir("lib/modules", 0o755)
	c.File("lib/modules/a.ko", 0o644, 3, strings.NewReader("abc"))
	c.File("init", 0o755, 1, strings.NewReader("x"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(cpio, "-idm", "--quiet")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "lib/modules/a.ko"))
	if err != nil || string(got) != "abc" {
		t.Errorf("a.ko = %q, %v", got, err)
	}
	st, err := os.Stat(filepath.Join(dir, "init"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("init: %v %v", st, err)
	}
}

func TestCPIORejectsAbsoluteNames(t *testing.T) {
	c := newCPIOWriter(io.Discard)
	c.File("/init", 0o755, 0, strings.NewReader(""))
	if err := c.Close(); err == nil {
		t.Error("absolute name accepted")
	}
}
