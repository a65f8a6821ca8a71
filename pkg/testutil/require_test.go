package testutil

import "testing"

func TestVersionAtLeast(t *testing.T) {
	for _, c := range []struct {
		v, min string
		want   bool
	}{
		{"4.2", "4.2", true}, {"4.2.1", "4.2", true}, {"4.10", "4.2", true}, {"5.0", "4.2", true},
		{"4.1.1", "4.2", false}, {"3.17.1", "4.2", false}, {"unknown", "4.2", false}, {"", "4.2", false},
	} {
		if got := versionAtLeast(c.v, c.min); got != c.want {
			t.Errorf("versionAtLeast(%q, %q) = %v, want %v", c.v, c.min, got, c.want)
		}
	}
	if v := criuVersion("Version: 4.2.1\nGitID: v4.2.1\n"); v != "4.2.1" {
		t.Errorf("criuVersion = %q", v)
	}
}
