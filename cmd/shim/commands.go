//go:build !guest

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox"
)

const usage = `cradle: a CRI runtime for Kubernetes

Usage:
  cradle serve [--config FILE] [--log-level LEVEL]   run the CRI daemon
                                 (SIGUSR1: goroutine stacks to the log; [debug] address: pprof)
  cradle images import|export|ls|rm|pull   image commands (the store, or the daemon when it runs)
  cradle check [--config FILE]   preflight of this node: OK/WARN/FAIL per requirement
  cradle config default          print the built-in configuration
  cradle version                 print the version


Exit status: 0 done, 1 failed, 2 usage error.
`

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
