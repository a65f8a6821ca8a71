//go:build !guest

package main

import (
	"context"
	"errors"
	"io"

	"github.com/cradle-runtime/cradle/pkg/preflight"
)

// checkCmd runs `cradle check`: one line per requirement, non-zero exit on
// any FAIL.
func checkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseWithConfig("check", args, stderr, nil)
	if err != nil {
		return err
	}
	if preflight.Write(stdout, preflight.Run(ctx, preflight.FactsOf(cfg))) {
		return errors.New("check: this node cannot run cradle as configured (see FAIL lines)")
	}
	return nil
}
