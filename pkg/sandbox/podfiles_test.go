package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A 64-character FQDN (kubelet's setHostnameAsFQDN) is the pod's hostname
// whole; a long pod name standing in for a hostname is cut to 63.
func TestPodFilesHostname(t *testing.T) {
	fqdn := strings.Repeat("a", 31) + "." + strings.Repeat("b", 20) + ".default.svc"
	for _, tc := range []struct {
		name, hostname, want string
	}{
		{name: "p", hostname: fqdn, want: fqdn},
		{name: strings.Repeat("n", 70), want: strings.Repeat("n", 63)},
		{name: "p", hostname: "web-0", want: "web-0"},
	} {
		pod := &Pod{Dir: t.TempDir(), Config: PodConfig{Name: tc.name, Hostname: tc.hostname, DNS: &DNSConfig{Servers: []string{"10.96.0.10"}}}}
		if err := writePodFiles(pod); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(pod.Dir, HostnameFile))
		if err != nil || string(b) != tc.want+"\n" || pod.Config.Hostname != tc.want {
			t.Errorf("hostname file %q (%v), config %q; want %q", b, err, pod.Config.Hostname, tc.want)
		}
	}
}
