//go:build guest

package main

import (
	"context"
	"flag"
	"io"
	"log/slog"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/agent/guest"
)

// agentCmd is `cradle agent`: PID 1 inside a microVM's initramfs (the
// kernel runs /init, this binary, with the arguments after "--" on its
// command line). It logs to the kernel log, which the VM's console shows.
func agentCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.String("port", api.PortName, "name of the virtio-serial port to serve the agent API on")
	runtime := fs.String("runtime", api.GuestRuntime, "the OCI runtime binary (crun) that makes the containers")
	debug := fs.Bool("debug", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(guest.KmsgWriter(stderr), &slog.HandlerOptions{Level: level})).
		With("component", "cradle-agent")
	return guest.Run(ctx, guest.Options{Version: version, PortName: *port, Runtime: *runtime, Log: log})
}
