package cri

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestImageUser(t *testing.T) {
	tests := []struct {
		user   string
		uid    int64
		hasUID bool
		name   string
	}{
		{"", 0, false, ""},
		{"0", 0, true, ""},
		{"1000", 1000, true, ""},
		{"1000:1000", 1000, true, ""},
		{"www-data", 0, false, "www-data"},
		{"www-data:33", 0, false, "www-data"},
	}
	for _, tt := range tests {
		uid, name := imageUser(tt.user)
		if (uid != nil) != tt.hasUID || (uid != nil && *uid != tt.uid) || name != tt.name {
			t.Errorf("imageUser(%q) = %v, %q", tt.user, uid, name)
		}
	}
}

func TestToStatus(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("x: %w", errdefs.ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("x: %w", errdefs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("x: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", errdefs.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("x: %w", errdefs.ErrUnauthenticated), codes.Unauthenticated},
		{fmt.Errorf("x: %w", errdefs.ErrDataLoss), codes.DataLoss},
		{fmt.Errorf("x: %w", errdefs.ErrNotImplemented), codes.Unimplemented},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{errors.New("unclassified"), codes.Internal},
		{status.Error(codes.ResourceExhausted, "as is"), codes.ResourceExhausted},
	}
	for _, tt := range tests {
		got := toStatus(tt.err)
		if status.Code(got) != tt.want {
			t.Errorf("toStatus(%v) = %v, want %v", tt.err, status.Code(got), tt.want)
		}
		if st, _ := status.FromError(got); st.Message() != tt.err.Error() && status.Code(tt.err) == codes.Unknown {
			t.Errorf("message %q lost, want %q", st.Message(), tt.err.Error())
		}
	}
}
