// Command cradle is the whole of cradle in one static binary: the CRI
// daemon (`cradle serve`) and its operator commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox"
)

// version and commit are set at link time (-X) by the Makefile.
var (
	version = "v0.1.0-dev"
	commit  = "unknown"
)

const usage = `cradle: a CRI runtime for Kubernetes

Usage:
  cradle serve [--config FILE] [--log-level LEVEL]   run the CRI daemon
                                 (SIGUSR1: goroutine stacks to the log; [debug] address: pprof)
  cradle images import|export|ls|rm|pull   image commands (the store, or the daemon when it runs)
  cradle check [--config FILE]   preflight of this node: OK/WARN/FAIL per requirement
  cradle config default          print the built-in configuration
  cradle agent [--port NAME]     the agent inside a microVM pod (PID 1 of its initramfs)
  cradle version                 print the version


Exit status: 0 done, 1 failed, 2 usage error.
`

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

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageErrorf("no command given")
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], stderr)
	case "images":
		return imagesCmd(ctx, args[1:], stdout, stderr)
	case "check":
		return checkCmd(ctx, args[1:], stdout, stderr)
	case "config":
		return configCmd(args[1:], stdout)
	case "pause": // the infra process of a pod sharing its PID namespace
		return nsbox.Pause(ctx)
	case "agent": // PID 1 of a microVM pod's guest
		return agentCmd(ctx, args[1:], stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "cradle %s (commit %s)\n", version, commit)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageErrorf("unknown command %q", args[0])
}

func configCmd(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "default" {
		return usageErrorf("usage: cradle config default")
	}
	b, err := config.Marshal(config.Default())
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}
