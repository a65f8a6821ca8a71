package execfifo

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// mkfifo makes a FIFO in a fresh directory and returns its path.
func mkfifo(t *testing.T) string {
	t.Helper()
	path := Path(t.TempDir(), "c1")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// deadPid is the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no true: %v", err)
	}
	return cmd.Process.Pid
}

func gone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", path, err)
	}
}

// ByWrite gives a reader (crun's init; here this process) its byte.
func TestByWriteReleasesTheReader(t *testing.T) {
	path := mkfifo(t)
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := ByWrite(path, os.Getpid(), nil)
	if err != nil || out != Released {
		t.Fatalf("ByWrite = %v, %v; want Released", out, err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 1 {
		t.Errorf("the reader got %d bytes, %v", n, err)
	}
	gone(t, path)
}

// Nobody reading: a live init was released earlier, a dead one cannot be.
func TestByWriteWithoutReader(t *testing.T) {
	path := mkfifo(t)
	if out, err := ByWrite(path, os.Getpid(), nil); err != nil || out != AlreadyReleased {
		t.Errorf("live init: ByWrite = %v, %v; want AlreadyReleased", out, err)
	}
	gone(t, path)
	path = mkfifo(t)
	if _, err := ByWrite(path, deadPid(t), nil); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("dead init: ByWrite = %v, want FailedPrecondition", err)
	}
}

// ByRead takes the byte a writer (runc's init) gives.
func TestByReadTakesTheByte(t *testing.T) {
	path := mkfifo(t)
	w, err := os.OpenFile(path, os.O_RDWR, 0) // a writer that holds the FIFO, as init does
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	go func() {
		time.Sleep(120 * time.Millisecond) // past a poll
		_, _ = w.Write([]byte{0})
	}()
	out, err := ByRead(context.Background(), path, os.Getpid(), nil)
	if err != nil || out != Released {
		t.Fatalf("ByRead = %v, %v; want Released", out, err)
	}
	gone(t, path)
}

// A dead writer is FailedPrecondition, and a cancelled wait ends.
func TestByReadGivesUp(t *testing.T) {
	path := mkfifo(t)
	if _, err := ByRead(context.Background(), path, deadPid(t), nil); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("dead init: ByRead = %v, want FailedPrecondition", err)
	}
	// A live init holding the FIFO that never writes: the wait ends with ctx.
	h, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := ByRead(ctx, path, os.Getpid(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ByRead = %v, want the context's deadline", err)
	}
}

// FinishInterrupted leaves an init that still holds its FIFO, named by any
// path to it (here a state root reached through a symbolic link), and
// completes the start of one that no longer does.
func TestFinishInterrupted(t *testing.T) {
	path := mkfifo(t)
	link := filepath.Join(t.TempDir(), "root")
	if err := os.Symlink(filepath.Dir(filepath.Dir(path)), link); err != nil {
		t.Fatal(err)
	}
	viaLink := Path(link, "c1")
	h, err := os.OpenFile(path, os.O_RDWR, 0) // init holding its FIFO
	if err != nil {
		t.Fatal(err)
	}
	if done, err := FinishInterrupted(viaLink, os.Getpid()); done || err != nil {
		t.Errorf("waiting init: FinishInterrupted = %v, %v; want false", done, err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the waiting init's FIFO: %v", err)
	}
	if done, err := FinishInterrupted(viaLink, deadPid(t)); done || err != nil {
		t.Errorf("dead init: FinishInterrupted = %v, %v; want false", done, err)
	}
	h.Close() // released: init has exec'd the container's process
	if done, err := FinishInterrupted(viaLink, os.Getpid()); !done || err != nil {
		t.Errorf("released init: FinishInterrupted = %v, %v; want true", done, err)
	}
	gone(t, path)
	if done, err := FinishInterrupted(viaLink, os.Getpid()); done || err != nil {
		t.Errorf("no FIFO: FinishInterrupted = %v, %v; want false", done, err)
	}
}

func TestNoFifo(t *testing.T) {
	path := Path(t.TempDir(), "c1")
	if _, err := ByWrite(path, os.Getpid(), nil); !errors.Is(err, ErrNoFifo) {
		t.Errorf("ByWrite = %v, want ErrNoFifo", err)
	}
	if _, err := ByRead(context.Background(), path, os.Getpid(), nil); !errors.Is(err, ErrNoFifo) {
		t.Errorf("ByRead = %v, want ErrNoFifo", err)
	}
	// A regular file where the FIFO should be is not written to.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ByWrite(path, os.Getpid(), nil); !errdefs.IsDataLoss(err) {
		t.Errorf("ByWrite on a regular file = %v, want DataLoss", err)
	}
}

func TestHasPoststartHooks(t *testing.T) {
	for spec, want := range map[string]bool{
		`{}`:                                     false,
		`{"hooks":{"prestart":[{"path":"/x"}]}}`: false,
		`{"hooks":{"poststart":[{"path":"/x"}]}}`: true,
		`{"hooks":{"poststart":[]}}`:              false,
		`not json`:                                true,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := HasPoststartHooks(dir); got != want {
			t.Errorf("HasPoststartHooks(%s) = %v, want %v", spec, got, want)
		}
	}
	if !HasPoststartHooks(t.TempDir()) {
		t.Error("a bundle without config.json: false, want true")
	}
}
