package ociruntime_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
)

// BenchmarkCreateStartDelete measures one container's create (through
// conmon), start and forced delete.
func BenchmarkCreateStartDelete(b *testing.B) {
	for _, name := range runtimes {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, name)
			ctx := context.Background()
			var total time.Duration
			for range b.N {
				b.StopTimer()
				c := e.bundle(b, "sleep", "1000")
				b.Cleanup(func() { e.deleteAndCheck(b, c) })
				b.StartTimer()
				start := time.Now()
				if _, err := e.rt.Create(ctx, ociruntime.CreateOptions{ID: c.id, Bundle: c.bundle, LogPath: c.log}); err != nil {
					b.Fatal(err)
				}
				if err := e.rt.Start(ctx, c.id); err != nil {
					b.Fatal(err)
				}
				if err := e.rt.Delete(ctx, c.id, true); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/container")
		})
	}
}

// TestConmonMemory logs what the conmon of each of 10 running containers
// costs in proportional set size. It reports, never asserts.
func TestConmonMemory(t *testing.T) {
	const n = 10
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			var pss, rss int64
			for range n {
				c := e.run(t, "sleep", "1000")
				pid, err := e.rt.MonitorPid(c.id)
				if err != nil {
					t.Fatal(err)
				}
				p, r := smapsRollup(t, pid)
				pss += p
				rss += r
			}
			t.Logf("conmon with %d %s containers running: PSS %d KiB in all, %d KiB each (RSS %d KiB each)", n, name, pss, pss/n, rss/n)
		})
	}
}

// smapsRollup returns a process's Pss and Rss in KiB.
func smapsRollup(t *testing.T, pid int) (pss, rss int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Pss:":
			pss = v
		case "Rss:":
			rss = v
		}
	}
	return pss, rss
}
