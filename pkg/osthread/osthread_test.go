package osthread

import (
	"os"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// The work never runs on the main thread, whichever thread the scheduler
// offers, and the namespace it makes stays on its thread.
func TestRunNeverOnTheMainThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unsharing a UTS namespace needs root")
	}
	before, err := os.Readlink("/proc/self/ns/uts")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4*runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				err := Run(func() error {
					if unix.Gettid() == unix.Getpid() {
						t.Error("ran on the main thread")
					}
					if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
						return err
					}
					return unix.Sethostname([]byte("throwaway"))
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if after, _ := os.Readlink("/proc/self/ns/uts"); after != before {
		t.Errorf("the main thread's UTS namespace is %s, was %s", after, before)
	}
	if h, _ := os.Hostname(); h == "throwaway" {
		t.Error("the host's name changed")
	}
}
