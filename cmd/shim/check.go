package main

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/cradle-runtime/cradle/pkg/preflight"
)

// checkCmd runs `cradle check`: one line per requirement, non-zero exit on
// any FAIL.
func checkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	handlers := map[string]string{}
	for name, h := range cfg.Runtime.Handlers {
		handlers[name] = h.Binary
	}
	if preflight.Write(stdout, preflight.Run(ctx, preflight.DefaultFacts(cfg.Root, handlers))) {
		return errors.New("check: this node cannot run cradle as configured (see FAIL lines)")
	}
	return nil
}
