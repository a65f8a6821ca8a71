package network

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/config"
)

// BenchmarkSetupTeardown measures one pod's network Setup + Teardown (with
// one hostPort), built-in network against Debian's CNI bridge + host-local
// + portmap, in the same run. Namespace creation is outside the timed
// region. p50 and p95 are reported; nothing is asserted.
func BenchmarkSetupTeardown(b *testing.B) {
	for _, mode := range []string{"builtin", "cni"} {
		b.Run(mode, func(b *testing.B) {
			var e *testEnv
			if mode == "cni" {
				e = cniEnv(b)
				e.writeConflist("10-bench.conflist", "crcni0", "10.126.0.0/16")
			} else {
				e = newEnv(b, func(c *config.Network) { c.Subnet = "10.123.0.0/16" })
			}
			m := e.manager()
			ctx := context.Background()
			var lat []time.Duration
			i := 0
			for b.Loop() {
				id := fmt.Sprintf("bench-%d", i)
				i++
				b.StopTimer()
				ns, err := NewNetNS(m.NetNSDir(), id)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if _, err := m.Setup(ctx, PodNetwork{PodID: id, NetNSPath: ns, PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}}}); err != nil {
					b.Fatal(err)
				}
				if err := m.Teardown(ctx, id); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				b.StopTimer()
				if err := RemoveNetNS(filepath.Join(m.NetNSDir(), id)); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
		})
	}
}
