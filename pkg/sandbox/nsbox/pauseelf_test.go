package nsbox

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPauseProgramIsAValidELF(t *testing.T) {
	prog := PauseProgram("amd64")
	f, err := elf.NewFile(bytes.NewReader(prog))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || len(f.Progs) != 1 || f.Entry != 0x400000+120 {
		t.Errorf("ELF header: %+v, %d segments", f.FileHeader, len(f.Progs))
	}
	if PauseProgram("riscv64") != nil {
		t.Error("a program for an architecture without one")
	}
}

// The program runs, ignores SIGTERM, leaves no zombie of its children
// behind, and dies of SIGKILL.
func TestPauseProgramRunsAndReaps(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the program is for amd64")
	}
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, PauseProgram("amd64"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	time.Sleep(100 * time.Millisecond)
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	// SigIgn holds bit 17 (SIGCHLD): orphans handed to it are reaped by
	// the kernel; and the process sleeps.
	var ignored uint64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:\t"); ok {
			ignored, _ = strconv.ParseUint(v, 16, 64)
		}
	}
	if ignored&(1<<(syscall.SIGCHLD-1)) == 0 || !strings.Contains(string(status), "State:\tS") {
		t.Errorf("status:\n%s", status)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("wait = %v", err)
	}
}
