package cleanup

import (
	"context"
	"errors"
	"testing"
)

func TestStack(t *testing.T) {
	var order []int
	var s Stack
	for i := range 3 {
		s.Push(func(ctx context.Context) error {
			if ctx.Err() != nil {
				t.Error("undo got a dead context")
			}
			order = append(order, i)
			if i == 1 {
				return errors.New("undo 1 failed")
			}
			return nil
		})
	}
	if err := s.Run(); err == nil {
		t.Error("a failed undo was not reported")
	}
	if len(order) != 3 || order[0] != 2 || order[2] != 0 {
		t.Errorf("undo order = %v, want last first", order)
	}
	if err := s.Run(); err != nil || len(order) != 3 {
		t.Error("Run twice ran undos twice")
	}
	var r Stack
	r.Push(func(context.Context) error { t.Error("released undo ran"); return nil })
	r.Release()
	if err := r.Run(); err != nil {
		t.Fatal(err)
	}
}
