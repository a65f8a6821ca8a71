package sandbox

import (
	"os"
	"os/exec"
	"testing"
)

func TestProcessStartAndAlive(t *testing.T) {
	start, err := ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !ProcessAlive(os.Getpid(), start) {
		t.Fatal("this process is not alive")
	}
	if ProcessAlive(os.Getpid(), start+1) {
		t.Fatal("a different start time names the same process")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true:", err)
	}
	if ProcessAlive(cmd.Process.Pid, 0) {
		t.Fatal("an exited process is alive")
	}
	if ProcessAlive(0, 0) {
		t.Fatal("pid 0 is alive")
	}
}
