//go:build !guest

package main

import (
	"log/slog"
	"os"
	"syscall"
)

// failpoint is the crash tests' hook (CRADLE_FAILPOINT=<step>): the daemon
// kills itself with SIGKILL the moment the engine reports that step done,
// as a crash or an OOM kill would, with no chance to clean up. Unset, it
// is nil and costs nothing.
func failpoint(step string, log *slog.Logger) func(string) {
	if step == "" {
		return nil
	}
	log.Warn("failpoint armed: the daemon will kill itself at this step", "step", step)
	return func(done string) {
		if done == step {
			log.Warn("failpoint reached: SIGKILL", "step", step)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never returns
		}
	}
}
