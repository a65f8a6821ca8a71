package ociruntime

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestCheckID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"0123456789abcdef", true},
		{"a.b_c-d", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"-rf", false},
		{"a b", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := checkID(tt.id)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
				t.Errorf("checkID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
		})
	}
}

func TestDrainWriter(t *testing.T) {
	var buf bytes.Buffer
	w := &drainWriter{w: &failAfter{w: &buf, left: 1}}
	for _, s := range []string{"ab", "cd", "ef"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: the rest must be drained, not refused", s, n, err)
		}
	}
	if buf.String() != "ab" {
		t.Errorf("got %q, want %q: nothing after the first failure", buf.String(), "ab")
	}
	if n, err := (&drainWriter{}).Write([]byte("x")); n != 1 || err != nil {
		t.Errorf("a nil writer discards: %d, %v", n, err)
	}
}

// failAfter fails every write after left successful ones.
type failAfter struct {
	w    io.Writer
	left int
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.left == 0 {
		return 0, io.ErrClosedPipe
	}
	f.left--
	return f.w.Write(p)
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"relative binary", Config{Binary: "runc", Conmon: "/bin/true", Root: dir, StateDir: dir}, errdefs.ErrInvalidArgument},
		{"no root", Config{Binary: "/bin/true", Conmon: "/bin/true", StateDir: dir}, errdefs.ErrInvalidArgument},
		{"missing conmon", Config{Binary: "/bin/true", Conmon: "/nonexistent/conmon", Root: dir, StateDir: dir}, errdefs.ErrFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); !errors.Is(err, tt.want) {
				t.Errorf("New = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 5}
	for _, s := range []string{"abc", "defg", "h"} {
		_, _ = tb.Write([]byte(s))
	}
	if got, want := tb.String(), `"defgh"`; got != want {
		t.Errorf("tail = %s, want %s", got, want)
	}
}
