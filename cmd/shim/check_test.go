//go:build !guest

package main

import (
	"os"
	"strings"
	"testing"
)

// `cradle check` reports the checks of the configured node, and fails on a
// FAIL line: here conmon, which the configuration points at a missing
// binary.
func TestCheckCommand(t *testing.T) {
	cfgPath, _ := testConfig(t)
	out, _, _ := cli(t, "check", "--config", cfgPath)
	for _, name := range []string{"conmon", "virtiofsd", "hugetlb", "nftables", "cni", "socket"} {
		if !strings.Contains(out, "  "+name+" ") {
			t.Errorf("no %s line:\n%s", name, out)
		}
	}
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, append(b, "[runtime]\nconmon = \"/nonexistent/conmon\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := cli(t, "check", "--config", cfgPath)
	if code != 1 || !strings.Contains(out, "FAIL  conmon") || !strings.Contains(stderr, "see FAIL lines") {
		t.Errorf("check with a missing conmon: exit %d\n%s%s", code, out, stderr)
	}
	if _, _, code := cli(t, "check", "--config", cfgPath, "--bogus"); code != 2 {
		t.Errorf("check --bogus: exit %d, want 2", code)
	}
}
