package ociruntime

import (
	"bytes"
	"errors"
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

func TestCapWriter(t *testing.T) {
	tests := []struct {
		name   string
		limit  int64
		writes []string
		want   string
	}{
		{"under", 10, []string{"abc", "def"}, "abcdef"},
		{"exact", 6, []string{"abc", "def"}, "abcdef"},
		{"split", 4, []string{"abc", "def"}, "abcd"},
		{"over", 2, []string{"abc", "def", "ghi"}, "ab"},
		{"zero", 0, []string{"abc"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := &capWriter{w: &buf, left: tt.limit}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v: the rest must be drained, not refused", s, n, err)
				}
			}
			if buf.String() != tt.want {
				t.Errorf("got %q, want %q", buf.String(), tt.want)
			}
		})
	}
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
