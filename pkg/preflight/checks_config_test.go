package preflight

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConmonAndVirtiofsd(t *testing.T) {
	bin := t.TempDir()
	conmon := script(t, bin, "conmon", "echo 'conmon version 9.9.9'")
	virtiofsd := script(t, bin, "virtiofsd", "echo 'virtiofsd 1.10.1'")
	oci := map[string]string{"runc": "runc"}
	withVM := map[string]string{"runc": "runc", "vm": "qemu"}
	tests := []struct {
		name       string
		check      func(context.Context, Facts) []Result
		facts      Facts
		wantStatus []Status
		wantDetail string
	}{
		{"conmon found", checkConmon, Facts{Conmon: conmon, Handlers: oci}, []Status{OK}, "conmon version 9.9.9 at " + conmon},
		{"conmon missing, oci handlers", checkConmon, Facts{Conmon: filepath.Join(bin, "nope"), Handlers: oci}, []Status{Fail}, "no oci handler can run containers"},
		{"conmon missing, vm handlers only", checkConmon, Facts{Conmon: "no-such-conmon", Handlers: map[string]string{"vm": "qemu"},
			VMHandlers: map[string]string{"vm": virtiofsd}}, []Status{Warn}, "no oci handler is configured"},
		{"criu that works", checkCRIU, Facts{CRIU: script(t, bin, "criu", `[ "$1" = check ] && echo 'Looks good.' || echo 'Version: 4.2'`)},
			[]Status{OK}, "Version: 4.2 at " + filepath.Join(bin, "criu") + ": `criu check` passes"},
		{"criu that fails its check", checkCRIU, Facts{CRIU: script(t, bin, "criu-3.17", `[ "$1" = check ] || { echo 'Version: 3.17.1'; exit 0; }
echo 'Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds'; exit 1`)},
			[]Status{Warn}, "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds: CheckpointContainer will fail"},
		{"criu missing", checkCRIU, Facts{CRIU: filepath.Join(bin, "no-criu")}, []Status{Warn}, "CheckpointContainer answers FailedPrecondition"},
		{"virtiofsd of a vm handler", checkVirtiofsd, Facts{Handlers: withVM, VMHandlers: map[string]string{"vm": virtiofsd}}, []Status{OK}, "virtiofsd 1.10.1"},
		{"virtiofsd of a vm handler missing", checkVirtiofsd, Facts{Handlers: withVM,
			VMHandlers: map[string]string{"vm": virtiofsd, "vm2": filepath.Join(bin, "nope")}}, []Status{OK, Fail}, "the vm handler vm2 cannot run pods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tt.check(context.Background(), tt.facts)
			if len(res) != len(tt.wantStatus) {
				t.Fatalf("results %+v", res)
			}
			for i, r := range res {
				if r.Status != tt.wantStatus[i] {
					t.Errorf("result %d = %+v, want %v", i, r, tt.wantStatus[i])
				}
			}
			if last := res[len(res)-1]; !strings.Contains(last.Detail, tt.wantDetail) {
				t.Errorf("detail %q, want %q", last.Detail, tt.wantDetail)
			}
		})
	}
}

func TestCheckCNI(t *testing.T) {
	bin := t.TempDir()
	script(t, bin, "bridge", `echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'`)
	valid := `{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge"}]}`
	tests := []struct {
		name       string
		mode       string
		files      map[string]string
		want       Status
		wantDetail string
	}{
		{"builtin, no CNI configuration", config.NetworkBuiltin, nil, OK, "not used"},
		{"builtin ignores the add-on's configuration", config.NetworkBuiltin, map[string]string{"10-k8s.conflist": valid}, Warn, "is not used"},
		{"cni, valid", config.NetworkCNI, map[string]string{"10-k8s.conflist": valid}, OK, `network "k8s", cniVersion 1.0.0, plugins bridge`},
		{"cni, nothing", config.NetworkCNI, nil, Fail, "no *.conflist"},
		{"cni, broken file first", config.NetworkCNI, map[string]string{"00-x.conf": "{", "10-k8s.conflist": valid}, Warn, "skipped before it"},
		{"cni, plugin missing", config.NetworkCNI, map[string]string{"10-k8s.conflist": `{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"flannel"}]}`}, Fail, `plugin "flannel"`},
		{"cni, version unsupported", config.NetworkCNI, map[string]string{"10-k8s.conflist": strings.Replace(valid, "1.0.0", "0.3.1", 1)}, Fail, "0.3.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, b := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			res := checkCNI(context.Background(), Facts{Network: config.Network{Mode: tt.mode, CNIConfDir: dir, CNIBinDirs: []string{bin}}})
			if len(res) != 1 || res[0].Status != tt.want || !strings.Contains(res[0].Detail, tt.wantDetail) {
				t.Errorf("got %+v, want %v with %q", res, tt.want, tt.wantDetail)
			}
		})
	}
}

func TestCheckSocket(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T, dir string) (socket, group string)
		want       Status
		wantDetail string
	}{
		{"directory made at start", func(t *testing.T, dir string) (string, string) {
			return filepath.Join(dir, "run", "cradle", "cradle.sock"), ""
		}, OK, "is made at start"},
		{"path too long", func(t *testing.T, dir string) (string, string) {
			return filepath.Join(dir, strings.Repeat("x", 120), "cradle.sock"), ""
		}, Fail, "longer than a unix socket path"},
		{"directory is a file", func(t *testing.T, dir string) (string, string) {
			os.WriteFile(filepath.Join(dir, "run"), nil, 0o644)
			return filepath.Join(dir, "run", "cradle.sock"), ""
		}, Fail, "is not a directory"},
		{"world-writable directory", func(t *testing.T, dir string) (string, string) {
			os.Chmod(dir, 0o777)
			return filepath.Join(dir, "cradle.sock"), ""
		}, Warn, "writable by everyone"},
		{"a file in the socket's place", func(t *testing.T, dir string) (string, string) {
			os.WriteFile(filepath.Join(dir, "cradle.sock"), nil, 0o644)
			return filepath.Join(dir, "cradle.sock"), ""
		}, Fail, "is not a socket"},
		{"stale socket", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "cradle.sock")
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
			return p, ""
		}, OK, "stale"},
		{"live socket", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "cradle.sock")
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return p, ""
		}, OK, "a daemon serves on it"},
		{"group by number", func(t *testing.T, dir string) (string, string) {
			return filepath.Join(dir, "cradle.sock"), "0"
		}, OK, "group 0"},
		{"unknown group", func(t *testing.T, dir string) (string, string) {
			return filepath.Join(dir, "cradle.sock"), "no-such-group-here"
		}, Fail, "socket_group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket, group := tt.setup(t, t.TempDir())
			res := checkSocket(context.Background(), Facts{Socket: socket, SocketGroup: group})
			if len(res) != 1 || res[0].Status != tt.want || !strings.Contains(res[0].Detail, tt.wantDetail) {
				t.Errorf("got %+v, want %v with %q", res, tt.want, tt.wantDetail)
			}
		})
	}
}

func TestHugetlbResult(t *testing.T) {
	pages := []hugePages{{size: "2048kB", reserved: 16, avail: 10}, {size: "1048576kB"}}
	tests := []struct {
		name       string
		layout     string
		ctrl       map[string]bool
		cerr, perr error
		pages      []hugePages
		want       Status
		wantDetail string
		wantFix    string
	}{
		{"usable", LayoutV2, map[string]bool{"hugetlb": true}, nil, nil, pages, OK, "2048kB: 16 reserved, 10 free; 1048576kB: 0 reserved", ""},
		{"none reserved", LayoutV2, map[string]bool{"hugetlb": true}, nil, nil, pages[1:], OK, "none reserved", ""},
		{"no huge pages", LayoutV2, map[string]bool{"hugetlb": true}, nil, nil, nil, Warn, "offers no huge pages", "CONFIG_HUGETLBFS"},
		{"hybrid: only cgroup2 has it", LayoutHybrid, map[string]bool{"memory": true}, nil, nil, pages, Warn, "not enforced", "unified_cgroup_hierarchy=1"},
		{"v1 without the hierarchy", LayoutV1, map[string]bool{}, nil, nil, pages, Warn, "no hugetlb controller", "mount -t cgroup -o hugetlb"},
		{"v2 not delegated", LayoutV2, map[string]bool{"memory": true}, nil, nil, pages, Warn, "no hugetlb controller", "subtree_control"},
		{"controllers unreadable", LayoutV2, nil, errors.New("boom"), nil, pages, Warn, "boom", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := hugetlbResult(tt.layout, tt.ctrl, tt.cerr, tt.pages, tt.perr)
			if r.Status != tt.want || !strings.Contains(r.Detail, tt.wantDetail) || !strings.Contains(r.Fix, tt.wantFix) {
				t.Errorf("got %+v, want %v with %q, fix %q", r, tt.want, tt.wantDetail, tt.wantFix)
			}
		})
	}
}

func TestReadHugePages(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "hugepages-1048576kB/nr_hugepages"), "1\n")
	write(t, filepath.Join(dir, "hugepages-1048576kB/free_hugepages"), "1\n")
	write(t, filepath.Join(dir, "hugepages-2048kB/nr_hugepages"), "64\n")
	write(t, filepath.Join(dir, "hugepages-2048kB/free_hugepages"), "60\n")
	got, err := readHugePages(dir)
	want := []hugePages{{size: "2048kB", reserved: 64, avail: 60}, {size: "1048576kB", reserved: 1, avail: 1}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("readHugePages = %+v, %v", got, err)
	}
	if got, err := readHugePages(filepath.Join(dir, "none")); err != nil || got != nil {
		t.Errorf("missing directory: %+v, %v", got, err)
	}
}

// On this host (root), the built-in network's rules fit in the kernel.
func TestCheckNftablesOnThisHost(t *testing.T) {
	testutil.RequireRoot(t)
	r := checkNftables(context.Background(), Facts{Network: config.Network{Mode: config.NetworkBuiltin}})
	if r.Status != OK {
		t.Errorf("nftables: %+v", r)
	}
}
