package ociruntime

import "testing"

func TestCommOf(t *testing.T) {
	for path, want := range map[string]string{
		"/usr/bin/conmon":                    "conmon",
		"/opt/conmon-2.1.12/bin/conmon-v2.1": "conmon-v2.1",
		"/opt/bin/conmon-from-source-build":  "conmon-from-sou",
	} {
		if got := commOf(path); got != want {
			t.Errorf("commOf(%q) = %q, want %q", path, got, want)
		}
	}
}
