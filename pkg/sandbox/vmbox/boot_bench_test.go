package vmbox

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkBoot boots each guest kernel (the minimal one and Debian's)
// under TCG to the agent's first Health answer, with an uncompressed and a
// gzip initramfs; it reports the time to Health, the guest's own uptime at
// that point, QEMU's PSS and the guest's memory in use (means; the time to
// Health also as its median, which a busy host's outliers move less).
func BenchmarkBoot(b *testing.B) {
	for _, bk := range bootKernels {
		for _, bc := range []struct {
			name string
			gzip bool
		}{{"cpio", false}, {"cpio.gz", true}} {
			b.Run(bk.name+"/"+bc.name, func(b *testing.B) { benchmarkBoot(b, newBootFixture(b, bk.require(b), bc.gzip)) })
		}
	}
}

func benchmarkBoot(b *testing.B, f bootFixture) {
	var total, uptime time.Duration
	var boots []time.Duration
	var pss int
	var used float64
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		spec := f.spec(b.TempDir())
		start := time.Now()
		vm, err := Start(ctx, spec, testLogger(b))
		if err != nil {
			b.Fatal(err)
		}
		h, err := vm.WaitReady(ctx)
		if err != nil {
			_ = vm.Stop(ctx)
			b.Fatal(err)
		}
		boots = append(boots, time.Since(start))
		total += boots[len(boots)-1]
		uptime += time.Duration(h.UptimeNs)
		p, _ := pssKiB(vm.PID())
		pss += p
		u, err := guestMemUsedMiB(ctx, vm)
		if err != nil {
			b.Fatal(err)
		}
		used += u
		if err := vm.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
	n := float64(b.N)
	b.ReportMetric(total.Seconds()/n, "s-to-health")
	slices.Sort(boots)
	b.ReportMetric(boots[len(boots)/2].Seconds(), "s-to-health-p50")
	b.ReportMetric(uptime.Seconds()/n, "s-guest-uptime")
	b.ReportMetric(float64(pss)/n/1024, "MiB-qemu-pss")
	b.ReportMetric(used/n, "MiB-guest-used")
}
