package vmbox

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cradle-runtime/cradle/pkg/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.args from QEMUArgs")

// QEMU's argv is golden-tested, one argument per line.
func TestQEMUArgsGolden(t *testing.T) {
	base := VMSpec{
		Name: "cradle-pod-0123", QEMU: "/usr/bin/qemu-system-x86_64",
		Kernel: "/var/lib/cradle/vm/kernels/abc/vmlinux", Initramfs: "/var/lib/cradle/vm/initramfs/def.cpio",
		VCPUs: 1, MemoryMiB: 256, Dir: "/run/cradle/vm/0123",
	}
	tests := []struct {
		name string
		mod  func(*VMSpec)
	}{
		{"tcg", func(s *VMSpec) { s.Accel, s.TSCKHz = config.AccelTCG, 2445431 }},
		{"tcg-smp-console", func(s *VMSpec) {
			s.Accel, s.VCPUs, s.MemoryMiB, s.ConsoleLog = config.AccelTCG, 2, 512, "/run/cradle/vm/0123/console.log"
		}},
		{"kvm", func(s *VMSpec) { s.Accel, s.TSCKHz = config.AccelKVM, 2445431 }},
		{"tcg-pod", func(s *VMSpec) {
			s.Accel, s.TSCKHz, s.VirtioFS, s.Tap, s.MAC = config.AccelTCG, 2445431, true, "tap0", "02:cd:01:23:45:67"
		}},
		// The minimal kernel: no ACPI, the devices on its command line.
		{"tcg-pod-cmdline-devices", func(s *VMSpec) {
			s.Accel, s.TSCKHz, s.VirtioFS, s.Tap, s.MAC = config.AccelTCG, 2445431, true, "tap0", "02:cd:01:23:45:67"
			s.CmdlineDevices = true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.mod(&s)
			got := strings.Join(QEMUArgs(s), "\n") + "\n"
			golden := filepath.Join("testdata", tt.name+".args")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./pkg/sandbox/vmbox -run Golden -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("QEMUArgs differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	tcg := KernelCmdline(VMSpec{Accel: config.AccelTCG, TSCKHz: 1000})
	kvm := KernelCmdline(VMSpec{Accel: config.AccelKVM, TSCKHz: 1000})
	if !strings.Contains(tcg, " tsc_early_khz=1000 ") {
		t.Errorf("TCG cmdline lacks the TSC rate: %s", tcg)
	}
	if strings.Contains(kvm, "tsc_early_khz") {
		t.Errorf("KVM cmdline has a TSC rate (KVM gives the guest kvmclock): %s", kvm)
	}
	for _, c := range []string{tcg, kvm} {
		if !strings.HasSuffix(c, " -- agent --port=cradle.agent") {
			t.Errorf("init's arguments are not last: %s", c)
		}
	}
}

// A pod's virtio devices fit microvm's transports without ACPI.
func TestVirtioDevicesFitTheTransports(t *testing.T) {
	full := VMSpec{VirtioFS: true, Tap: "tap0", MAC: "02:cd:01:23:45:67", CmdlineDevices: true}
	if n := len(virtioDevices(full)); n > mmioTransports {
		t.Errorf("%d virtio devices, microvm has %d transports", n, mmioTransports)
	}
	if got := virtioMMIOCmdline(full); len(got) != len(virtioDevices(full)) {
		t.Errorf("command line devices %q for %d devices", got, len(virtioDevices(full)))
	}
}
