package storage

import (
	"context"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
)

// BenchmarkPullLarge pulls and unpacks a ~100 MiB image of 4 incompressible
// 25 MiB layers (plus the busybox base) from the loopback registry into an
// empty store each iteration, and reports throughput and where the time
// went. Fetch, verify and unpack are summed over concurrent workers.
func BenchmarkPullLarge(b *testing.B) {
	reg := fixtures.StartRegistry(b)
	reg.Push(b, reg.Ref("large:1"), fixtures.Large(b, 4, 25<<20))
	ctx := context.Background()
	var bytes, fetch, verify, unpack, total float64
	b.ResetTimer() // building and pushing the image is not the pull
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := newStore(b, b.TempDir())
		b.StartTimer()
		img, st, err := s.Pull(ctx, reg.Ref("large:1"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		bytes += float64(st.Bytes)
		fetch += st.Fetch.Seconds()
		verify += st.Verify.Seconds()
		unpack += st.Unpack.Seconds()
		total += st.Total.Seconds()
		if err := s.Remove(ctx, img.ID, false); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(bytes/total/(1<<20), "MiB/s")
	b.ReportMetric(bytes/n/(1<<20), "MiB/pull")
	b.ReportMetric(fetch/n, "fetch-s/pull")
	b.ReportMetric(verify/n, "verify-s/pull")
	b.ReportMetric(unpack/n, "unpack-s/pull")
	b.SetBytes(int64(bytes / n))
}
