//go:build !guest

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
)

func TestHumanSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{999, "999 B"},
		{1000, "1.00 kB"},
		{1536, "1.54 kB"},
		{12_345, "12.3 kB"},
		{999_499, "999 kB"},
		{999_500, "1.00 MB"},
		{4_300_000, "4.30 MB"},
		{123_456_789, "123 MB"},
		{5_000_000_000, "5.00 GB"},
		{2_500_000_000_000, "2.50 TB"},
	}
	for _, tt := range tests {
		if got := humanSize(tt.n); got != tt.want {
			t.Errorf("humanSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	tests := []struct {
		name            string
		done, total     int64
		elapsed         time.Duration
		finishing, want string
	}{
		{"unknown total", 2_000_000, 0, 2 * time.Second, "", "op: 2.00 MB, 1.00 MB/s"},
		{"part of total", 25_000_000, 100_000_000, 5 * time.Second, "", "op: 25.0 MB of 100 MB (25%), 5.00 MB/s"},
		{"estimate exceeded", 120_000_000, 100_000_000, time.Second, "", "op: 120 MB of 100 MB (100%), 120 MB/s"},
		{"counted part done", 100_000_000, 100_000_000, time.Second, "read; unpacking", "op: 100 MB read; unpacking"},
		{"no time yet", 10, 0, 0, "", "op: 10 B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := progressLine("op", tt.done, tt.total, tt.elapsed, tt.finishing); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// A short operation prints nothing; a long one prints lines, then how it
// ended.
func TestProgressMeter(t *testing.T) {
	var quick bytes.Buffer
	p := newProgress(&quick, "quick", 10, "", time.Hour, false)
	p.add(10)
	p.stop(true)
	if quick.Len() != 0 {
		t.Errorf("a quick operation printed %q", quick.String())
	}

	var long testutil.Buffer
	p = newProgress(&long, "long", 100, "", 10*time.Millisecond, false)
	p.add(40)
	time.Sleep(50 * time.Millisecond)
	p.stop(false)
	lines := strings.Split(strings.TrimSpace(long.String()), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "long: 40 B of 100 B (40%)") ||
		!strings.HasPrefix(lines[len(lines)-1], "long: failed, 40 B in ") {
		t.Errorf("progress of a long operation:\n%s", long.String())
	}

	var tty testutil.Buffer
	p = newProgress(&tty, "tty", 0, "", 10*time.Millisecond, true)
	p.set(5)
	time.Sleep(30 * time.Millisecond)
	p.stop(true)
	if s := tty.String(); !strings.HasPrefix(s, "\r\x1b[Ktty: 5 B") || !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("terminal progress = %q", s)
	}
}
