//go:build guest

package main

import (
	"context"
	"fmt"
	"io"
)

const usage = `cradle agent: the agent of a microVM pod, PID 1 of its initramfs

Usage:
  cradle agent [--port NAME]     serve the agent API on the virtio-serial port NAME
  cradle version                 print the version

Exit status: 0 done, 1 failed, 2 usage error.
`

// run is the guest build's command line: the agent alone, without the
// daemon (a small /init is a faster boot and less guest memory).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageErrorf("no command given")
	}
	switch args[0] {
	case "agent":
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
