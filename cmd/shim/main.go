// Command cradle is the whole of cradle in one static binary: the CRI
// daemon (`cradle serve`) and its operator commands. Built with the
// "guest" tag it is the agent of microVM pods alone (`cradle agent`, PID 1
// of their initramfs), which the daemon carries inside it (guestagent.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version and commit are set at link time (-X) by the Makefile.
var (
	version = "v0.1.0-dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	code := exitCode(err)
	if code != 0 {
		fmt.Fprintln(os.Stderr, "cradle:", err)
	}
	os.Exit(code)
}

// exitCode is the exit status err calls for: 0 for none (or help asked
// for), 2 for a command line that cannot run, 1 for a failure.
func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		return 2
	}
	return 1
}

// usageError is a command line that cannot run: nothing was done.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...)}
}
