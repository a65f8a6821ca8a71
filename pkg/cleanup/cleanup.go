// Package cleanup is the undo stack of multi-step creates (gVisor's
// cleanup.Make/Clean/Release idiom): push an undo the moment a resource
// exists, Release on success, Run on failure. Undos run last first, on a
// fresh bounded context, so a cancelled request still cleans up.
package cleanup

import (
	"context"
	"errors"
	"time"
)

// Timeout bounds all the undos of one stack.
const Timeout = time.Minute

// Stack holds undo steps.
type Stack struct {
	fns []func(ctx context.Context) error
}

// Push adds an undo step.
func (s *Stack) Push(fn func(ctx context.Context) error) { s.fns = append(s.fns, fn) }

// Release forgets the undos: the create succeeded.
func (s *Stack) Release() { s.fns = nil }

// Run undoes, last first, and reports every failure. It is a no-op after
// Release.
func (s *Stack) Run() error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var errs []error
	for i := len(s.fns) - 1; i >= 0; i-- {
		if err := s.fns[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.fns = nil
	return errors.Join(errs...)
}
