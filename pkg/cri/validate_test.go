package cri

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestValidHostname(t *testing.T) {
	fqdn64 := strings.Repeat("a", 31) + "." + strings.Repeat("b", 20) + ".default.svc" // setHostnameAsFQDN's longest
	for h, ok := range map[string]bool{
		"":                             true,
		"web-0":                        true,
		"Web-0":                        true,
		strings.Repeat("a", 63):        true,
		fqdn64:                         true,
		"web-0.web.default.svc":        true,
		strings.Repeat("a", 64):        false, // one label of 64
		strings.Repeat("a.", 32) + "b": false, // 65 characters
		"web\n10.0.0.1 evil":           false,
		"web 0":                        false,
		"web\t0":                       false,
		"web_0":                        false,
		"-web":                         false,
		"web-":                         false,
		"web..svc":                     false,
		".web":                         false,
		"web.":                         false,
		"wéb":                          false,
		"web\x00":                      false,
		"../etc":                       false,
	} {
		err := validHostname(h)
		if (err == nil) != ok || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
			t.Errorf("validHostname(%q) = %v, want ok=%v", h, err, ok)
		}
	}
	if len(fqdn64) != 64 {
		t.Fatalf("fqdn64 has %d characters", len(fqdn64))
	}
}

// A pod whose hostname carries a newline is refused at the edge instead of
// being written into /etc/hostname (issue 14, item 8).
func TestRunPodSandboxRefusesBadHostname(t *testing.T) {
	cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Uid: "u", Namespace: "n"}, Hostname: "web\n10.0.0.1 evil"}
	if _, err := toPodConfig(cfg, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("toPodConfig = %v, want InvalidArgument", err)
	}
	cfg.Hostname = "web-0"
	if _, err := toPodConfig(cfg, ""); err != nil {
		t.Errorf("toPodConfig with a good hostname = %v", err)
	}
}
