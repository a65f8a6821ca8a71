package config

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite configs/cradle.toml from Default()")

// The shipped configs/cradle.toml is exactly what `cradle config default` prints.
func TestGoldenDefaultConfig(t *testing.T) {
	got, err := Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("..", "..", "configs", "cradle.toml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run go test ./pkg/config -update): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("configs/cradle.toml differs from Default() (-file +default); run go test ./pkg/config -update:\n%s", diff)
	}
}

func TestDefaultRoundTrips(t *testing.T) {
	b, err := Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Decode(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), c); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "empty file keeps defaults", in: "", check: func(t *testing.T, c Config) {
			if diff := cmp.Diff(Default(), c); diff != "" {
				t.Error(diff)
			}
		}},
		{name: "override keeps other defaults", in: "[images]\ndial_timeout = \"3s\"\n", check: func(t *testing.T, c Config) {
			if c.Images.DialTimeout.D() != 3*time.Second || c.Images.MaxConcurrentDownloads != 3 {
				t.Errorf("got %+v", c.Images)
			}
		}},
		{name: "handlers replace the default set", in: "[runtime]\ndefault_handler = \"x\"\n[runtime.handlers.x]\nkind = \"oci\"\nbinary = \"/usr/bin/runc\"\n",
			check: func(t *testing.T, c Config) {
				if len(c.Runtime.Handlers) != 1 || c.Runtime.Handlers["x"].Binary != "/usr/bin/runc" {
					t.Errorf("handlers = %+v", c.Runtime.Handlers)
				}
			}},
		{name: "unknown top-level key", in: "rooot = \"/x\"\n", wantErr: "rooot"},
		{name: "unknown nested key", in: "[images]\nmirrors = 1\n", wantErr: "mirrors"},
		{name: "bad duration", in: "[images]\ndial_timeout = \"soon\"\n", wantErr: "soon"},
		{name: "relative root", in: "root = \"var/lib\"\n", wantErr: "root: \"var/lib\" is not an absolute path"},
		{name: "bad level", in: "[log]\nlevel = \"loud\"\n", wantErr: "log.level"},
		{name: "unknown default handler", in: "[runtime]\ndefault_handler = \"kata\"\n", wantErr: "runtime.default_handler"},
		{name: "bad handler kind", in: "[runtime.handlers.runc]\nkind = \"wasm\"\nbinary = \"x\"\n", wantErr: "runtime.handlers.runc.kind"},
		{name: "vm handler gets defaults", in: "[runtime.handlers.vm]\nkind = \"vm\"\n[runtime.handlers.runc]\nkind = \"oci\"\nbinary = \"runc\"\n",
			check: func(t *testing.T, c Config) {
				want := Handler{Kind: KindVM, Binary: DefaultVMM, VM: &VM{VCPUs: 1, MemoryMiB: 256, Accel: AccelAuto, Virtiofsd: DefaultVirtiofsd, GuestRuntime: DefaultGuestOCI}}
				if diff := cmp.Diff(want, c.Runtime.Handlers["vm"]); diff != "" {
					t.Error(diff)
				}
				if c.Runtime.Handlers["runc"].VM != nil {
					t.Error("oci handler got a vm section")
				}
			}},
		{name: "vm handler overrides", in: "[runtime.handlers.runc]\nkind = \"oci\"\nbinary = \"runc\"\n[runtime.handlers.kata]\nkind = \"vm\"\nbinary = \"/opt/qemu\"\n[runtime.handlers.kata.vm]\nkernel = \"/k/vmlinux\"\nvcpus = 2\naccel = \"tcg\"\n",
			check: func(t *testing.T, c Config) {
				want := Handler{Kind: KindVM, Binary: "/opt/qemu", VM: &VM{Kernel: "/k/vmlinux", VCPUs: 2, MemoryMiB: 256, Accel: AccelTCG, Virtiofsd: DefaultVirtiofsd, GuestRuntime: DefaultGuestOCI}}
				if diff := cmp.Diff(want, c.Runtime.Handlers["kata"]); diff != "" {
					t.Error(diff)
				}
			}},
		{name: "vm bad accel", in: "[runtime.handlers.runc]\nkind = \"oci\"\nbinary = \"runc\"\n[runtime.handlers.vm]\nkind = \"vm\"\n[runtime.handlers.vm.vm]\naccel = \"hvf\"\n", wantErr: "runtime.handlers.vm.vm.accel"},
		{name: "vm too little memory", in: "[runtime.handlers.runc]\nkind = \"oci\"\nbinary = \"runc\"\n[runtime.handlers.vm]\nkind = \"vm\"\n[runtime.handlers.vm.vm]\nmemory_mib = 16\n", wantErr: "runtime.handlers.vm.vm.memory_mib"},
		{name: "vm relative kernel", in: "[runtime.handlers.runc]\nkind = \"oci\"\nbinary = \"runc\"\n[runtime.handlers.vm]\nkind = \"vm\"\n[runtime.handlers.vm.vm]\nkernel = \"vmlinuz\"\n", wantErr: "runtime.handlers.vm.vm.kernel"},
		{name: "vm section on oci handler", in: "[runtime.handlers.runc]\nkind = \"oci\"\nbinary = \"runc\"\n[runtime.handlers.runc.vm]\nvcpus = 2\n", wantErr: "runtime.handlers.runc.vm"},
		{name: "bad sandbox image", in: "[images]\nsandbox_image = \"bad//ref\"\n", wantErr: "images.sandbox_image"},
		{name: "bad version", in: "version = 7\n", wantErr: "unsupported schema version 7"},
		{name: "cni mode", in: "[network]\nmode = \"cni\"\ncni_conf_dir = \"/etc/cni/net.d\"\n", check: func(t *testing.T, c Config) {
			if c.Network.Mode != NetworkCNI || c.Network.Subnet != "10.88.0.0/16" {
				t.Errorf("network = %+v", c.Network)
			}
		}},
		{name: "dual stack", in: "[network]\nsubnet_v6 = \"fd88::/64\"\n", check: func(t *testing.T, c Config) {
			if c.Network.SubnetV6 != "fd88::/64" {
				t.Errorf("network = %+v", c.Network)
			}
		}},
		{name: "bad network mode", in: "[network]\nmode = \"flannel\"\n", wantErr: "network.mode"},
		{name: "bad subnet", in: "[network]\nsubnet = \"10.88.0.0\"\n", wantErr: "network.subnet"},
		{name: "v6 subnet as v4", in: "[network]\nsubnet = \"fd00::/64\"\n", wantErr: "not an IPv4 subnet"},
		{name: "subnet host bits", in: "[network]\nsubnet = \"10.88.0.1/16\"\n", wantErr: "did you mean 10.88.0.0/16"},
		{name: "subnet too small", in: "[network]\nsubnet = \"10.88.0.0/31\"\n", wantErr: "too small"},
		{name: "bad v6 subnet", in: "[network]\nsubnet_v6 = \"10.0.0.0/8\"\n", wantErr: "network.subnet_v6"},
		{name: "bridge name too long", in: "[network]\nbridge = \"abcdefghijklmnop\"\n", wantErr: "network.bridge"},
		{name: "bad mtu", in: "[network]\nmtu = 100\n", wantErr: "network.mtu"},
		{name: "relative cni dir", in: "[network]\ncni_conf_dir = \"net.d\"\n", wantErr: "network.cni_conf_dir"},
		{name: "cni without bin dirs", in: "[network]\nmode = \"cni\"\ncni_bin_dirs = []\n", wantErr: "network.cni_bin_dirs"},
		{name: "streaming address", in: "[streaming]\naddress = \"[::1]:10010\"\n", check: func(t *testing.T, c Config) {
			if c.Streaming.Address != "[::1]:10010" || c.Streaming.IdleTimeout.D() != 4*time.Hour {
				t.Errorf("streaming = %+v", c.Streaming)
			}
		}},
		{name: "streaming address without port", in: "[streaming]\naddress = \"127.0.0.1\"\n", wantErr: "streaming.address"},
		{name: "streaming address without host", in: "[streaming]\naddress = \":0\"\n", wantErr: "streaming.address"},
		{name: "streaming port too big", in: "[streaming]\naddress = \"127.0.0.1:70000\"\n", wantErr: "streaming.address"},
		{name: "streaming idle timeout", in: "[streaming]\nidle_timeout = \"0s\"\n", wantErr: "streaming.idle_timeout"},
		{name: "syntax error", in: "root = \n", wantErr: "line 1"},
		{name: "conmon path", in: "[runtime]\nconmon = \"/opt/conmon/bin/conmon\"\n", check: func(t *testing.T, c Config) {
			if c.Runtime.Conmon != "/opt/conmon/bin/conmon" {
				t.Errorf("conmon = %q", c.Runtime.Conmon)
			}
		}},
		{name: "empty conmon", in: "[runtime]\nconmon = \"\"\n", wantErr: "runtime.conmon"},
		{name: "debug off by default", in: "", check: func(t *testing.T, c Config) {
			if c.Debug.Address != "" {
				t.Errorf("debug.address = %q, want off", c.Debug.Address)
			}
		}},
		{name: "debug on 127.0.0.1", in: "[debug]\naddress = \"127.0.0.1:6060\"\n", check: func(t *testing.T, c Config) {
			if c.Debug.Address != "127.0.0.1:6060" {
				t.Errorf("debug.address = %q", c.Debug.Address)
			}
		}},
		{name: "debug on 127.0.0.2", in: "[debug]\naddress = \"127.0.0.2:0\"\n", check: func(*testing.T, Config) {}},
		{name: "debug on ::1", in: "[debug]\naddress = \"[::1]:6060\"\n", check: func(*testing.T, Config) {}},
		{name: "debug on localhost", in: "[debug]\naddress = \"localhost:6060\"\n", check: func(*testing.T, Config) {}},
		{name: "debug on every address", in: "[debug]\naddress = \":6060\"\n", wantErr: "debug.address: \":6060\" is not a loopback address"},
		{name: "debug on 0.0.0.0", in: "[debug]\naddress = \"0.0.0.0:6060\"\n", wantErr: "not a loopback address"},
		{name: "debug on [::]", in: "[debug]\naddress = \"[::]:6060\"\n", wantErr: "not a loopback address"},
		{name: "debug on a LAN address", in: "[debug]\naddress = \"10.0.0.5:6060\"\n", wantErr: "not a loopback address"},
		{name: "debug on a host name", in: "[debug]\naddress = \"node1:6060\"\n", wantErr: "not a loopback address"},
		{name: "debug without port", in: "[debug]\naddress = \"127.0.0.1\"\n", wantErr: "debug.address"},
		{name: "debug bad port", in: "[debug]\naddress = \"127.0.0.1:http\"\n", wantErr: "debug.address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Decode(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.toml")
	if _, err := Load(missing, false); err != nil {
		t.Errorf("missing optional file: %v", err)
	}
	if _, err := Load(missing, true); err == nil {
		t.Error("missing required file: no error")
	}
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("[grpc]\nsocket = \"/tmp/x.sock\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, true)
	if err != nil || c.GRPC.Socket != "/tmp/x.sock" {
		t.Errorf("Load = %+v, %v", c.GRPC, err)
	}
}

// A vm handler survives Marshal and Decode with its vm section.
func TestVMHandlerRoundTrips(t *testing.T) {
	c := Default()
	c.Runtime.Handlers["vm"] = Handler{Kind: KindVM, Binary: DefaultVMM,
		VM: &VM{Kernel: "/boot/vmlinuz-6.1.0-56-amd64", VCPUs: 2, MemoryMiB: 512, Accel: AccelTCG, Virtiofsd: DefaultVirtiofsd, GuestRuntime: DefaultGuestOCI}}
	b, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestResolveDefaultHandler: auto picks crun where it can run containers,
// else runc, else another OCI handler that can, else runc or the first
// handler (which says why it cannot); a named handler is kept.
func TestResolveDefaultHandler(t *testing.T) {
	oci := Handler{Kind: KindOCI}
	vm := Handler{Kind: KindVM}
	for _, tt := range []struct {
		name     string
		def      string
		handlers map[string]Handler
		ready    []string
		want     string
	}{
		{"crun ready", "auto", map[string]Handler{"runc": oci, "crun": oci}, []string{"runc", "crun"}, "crun"},
		{"crun missing", "auto", map[string]Handler{"runc": oci, "crun": oci}, []string{"runc"}, "runc"},
		{"named", "runc", map[string]Handler{"runc": oci, "crun": oci}, []string{"runc", "crun"}, "runc"},
		{"other oci", "auto", map[string]Handler{"runc": oci, "youki": oci, "vm": vm}, []string{"youki", "vm"}, "youki"},
		{"none ready", "auto", map[string]Handler{"runc": oci, "crun": oci}, nil, "runc"},
		{"none ready, no runc", "auto", map[string]Handler{"vm": vm, "kata": oci}, []string{"vm"}, "kata"},
		{"a handler named auto", "auto", map[string]Handler{"auto": oci, "crun": oci}, []string{"crun"}, "auto"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := Runtime{DefaultHandler: tt.def, Handlers: tt.handlers}
			if got := r.ResolveDefaultHandler(func(n string) bool { return slices.Contains(tt.ready, n) }); got != tt.want {
				t.Errorf("resolved %q, want %q", got, tt.want)
			}
		})
	}
}
