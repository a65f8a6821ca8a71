package network

import (
	"context"
	"errors"
	"time"
)

// undoTimeout bounds the clean-up of a failed Setup; it runs on a fresh
// context so that a cancelled request still cleans up.
const undoTimeout = 30 * time.Second

// undo is a stack of clean-up steps (gVisor's cleanup idiom): push as soon
// as a resource exists, release on success, run on failure.
type undo struct {
	fns []func(ctx context.Context) error
}

func (u *undo) push(fn func(ctx context.Context) error) { u.fns = append(u.fns, fn) }

func (u *undo) release() { u.fns = nil }

// run unwinds the stack, last first, and reports every failure.
func (u *undo) run() error {
	ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
	defer cancel()
	var errs []error
	for i := len(u.fns) - 1; i >= 0; i-- {
		if err := u.fns[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	u.fns = nil
	return errors.Join(errs...)
}
