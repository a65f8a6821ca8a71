package vmbox

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// HostTSCKHz returns the host's TSC rate in kHz. A TCG guest reads the host's
// TSC (QEMU's rdtsc helper returns host ticks), and with no PIT to calibrate
// against (microvm, pit=off) a kernel that guesses its rate hangs at random:
// the guest is told the rate with tsc_early_khz=.
//
// Sources, most trustworthy first:
//  1. CPUID leaf 0x15 (TSC/crystal ratio × crystal Hz; Intel since Skylake).
//  2. CPUID leaf 0x40000010 (hypervisor timing leaf: VMware, some KVM hosts).
//  3. Measuring the TSC against CLOCK_MONOTONIC_RAW over calibrateFor, only
//     when the TSC is constant and non-stop (cpuinfo flags), so that the rate
//     is one number. This is what decides on AMD hosts and in most VMs.
//
// /proc/cpuinfo's "cpu MHz" is not used: it is the current core clock on
// many hosts, not the TSC rate; sysfs tsc_freq_khz is not upstream.
func HostTSCKHz() (uint64, string, error) {
	if max15, _, _, _ := cpuid(0, 0); max15 >= 0x15 {
		if den, num, hz, _ := cpuid(0x15, 0); den != 0 && num != 0 && hz != 0 {
			return uint64(hz) * uint64(num) / uint64(den) / 1000, "cpuid 0x15", nil
		}
	}
	if maxHV, _, _, _ := cpuid(0x40000000, 0); maxHV >= 0x40000010 {
		if khz, _, _, _ := cpuid(0x40000010, 0); khz != 0 {
			return uint64(khz), "cpuid 0x40000010", nil
		}
	}
	if !constantTSC("/proc/cpuinfo") {
		return 0, "", errors.New("the TSC is not constant and non-stop: its rate cannot be measured")
	}
	khz, err := measureTSCKHz(calibrateFor)
	return khz, "measured against CLOCK_MONOTONIC_RAW", err
}

const calibrateFor = 50 * time.Millisecond

func constantTSC(cpuinfo string) bool {
	b, err := os.ReadFile(cpuinfo)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			f := strings.Fields(v)
			has := func(s string) bool {
				for _, x := range f {
					if x == s {
						return true
					}
				}
				return false
			}
			return has("constant_tsc") && has("nonstop_tsc")
		}
	}
	return false
}

// measureTSCKHz counts TSC ticks over d of CLOCK_MONOTONIC_RAW (which NTP
// does not slew). Each end is read between two clock reads, and the
// tightest of a few tries is kept, so a preemption does not skew it.
func measureTSCKHz(d time.Duration) (uint64, error) {
	raw := func() int64 {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_RAW, &ts)
		return ts.Nano()
	}
	sample := func() (tsc uint64, ns int64, spread int64) {
		best := int64(1 << 62)
		for range 5 {
			a := raw()
			t := rdtsc()
			b := raw()
			if b-a < best {
				best, tsc, ns = b-a, t, a+(b-a)/2
			}
		}
		return tsc, ns, best
	}
	t0, n0, s0 := sample()
	time.Sleep(d)
	t1, n1, s1 := sample()
	if n1 <= n0 || t1 <= t0 {
		return 0, errors.New("TSC or clock went backwards")
	}
	if s0+s1 > int64(d)/1000 {
		return 0, fmt.Errorf("TSC measurement too noisy (%d ns of uncertainty)", s0+s1)
	}
	return (t1 - t0) * 1_000_000 / uint64(n1-n0), nil
}
