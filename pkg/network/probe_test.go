package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/go-cmp/cmp"
)

// The probe writes the built-in network's rules in a namespace of its own:
// the host's ruleset has no probe table after it, and this process's
// network namespace is the host's.
func TestProbeNftables(t *testing.T) {
	testutil.RequireRoot(t)
	before, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if err := ProbeNftables(); err != nil {
		t.Fatalf("ProbeNftables on this host: %v", err)
	}
	c, err := nftRules{}.conn()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == TableName("probe0") {
			t.Errorf("the probe left table %s in the host's ruleset", tb.Name)
		}
	}
	if after, _ := os.Readlink("/proc/self/ns/net"); after != before {
		t.Errorf("network namespace %s after the probe, was %s", after, before)
	}
}

func TestCheckCNI(t *testing.T) {
	bin := t.TempDir()
	for _, p := range []string{"bridge", "portmap"} {
		// A plugin that answers VERSION for 0.3.0 to 1.0.0.
		script := "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]}'\n"
		if err := os.WriteFile(filepath.Join(bin, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	list := func(version, plugins string) string {
		return `{"cniVersion":"` + version + `","name":"k8s","plugins":[` + plugins + `]}`
	}
	tests := []struct {
		name        string
		files       map[string]string
		wantFile    string
		wantPlugins []string
		wantSkipped int
		wantErr     string
	}{
		{name: "empty dir", files: nil, wantErr: "no *.conflist"},
		{name: "valid conflist", files: map[string]string{"10-k8s.conflist": list("1.0.0", `{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}`)},
			wantFile: "10-k8s.conflist", wantPlugins: []string{"bridge", "portmap"}},
		{name: "single plugin conf", files: map[string]string{"10-k8s.conf": `{"cniVersion":"0.4.0","name":"k8s","type":"bridge"}`},
			wantFile: "10-k8s.conf", wantPlugins: []string{"bridge"}},
		{name: "first by name is broken", files: map[string]string{
			"05-bad.conflist": "{not json", "10-k8s.conflist": list("1.0.0", `{"type":"bridge"}`)},
			wantFile: "10-k8s.conflist", wantPlugins: []string{"bridge"}, wantSkipped: 1},
		{name: "missing plugin", files: map[string]string{"10-k8s.conflist": list("1.0.0", `{"type":"calico"}`)}, wantErr: `plugin "calico"`},
		{name: "unsupported version", files: map[string]string{"10-k8s.conflist": list("1.1.0", `{"type":"bridge"}`)}, wantErr: "1.1.0"},
		{name: "other files ignored", files: map[string]string{"README": "x", "10-k8s.conflist": list("1.0.0", `{"type":"bridge"}`)},
			wantFile: "10-k8s.conflist", wantPlugins: []string{"bridge"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := CheckCNI(context.Background(), dir, []string{bin})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(got.File) != tt.wantFile || len(got.Skipped) != tt.wantSkipped {
				t.Errorf("got %+v", got)
			}
			if diff := cmp.Diff(tt.wantPlugins, got.Plugins); diff != "" {
				t.Error(diff)
			}
		})
	}
}
