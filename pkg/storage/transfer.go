package storage

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// PullStats measures one pull. Fetch, Verify and Unpack are summed over
// concurrent workers, so together they can exceed Total.
type PullStats struct {
	Bytes  int64         // bytes received from registries
	Fetch  time.Duration // waiting on registry reads
	Verify time.Duration // hashing blobs against their digests and writing them to the content store
	Unpack time.Duration // decompressing and applying layers into snapshots
	Total  time.Duration // wall time of the whole pull
}

// pullMeter is the live, concurrently updated form of PullStats.
type pullMeter struct {
	bytes       atomic.Int64
	fetchNanos  atomic.Int64
	verifyNanos atomic.Int64
	unpackNanos atomic.Int64
}

func (m *pullMeter) addUnpack(d time.Duration) { m.unpackNanos.Add(int64(d)) }

func (m *pullMeter) snapshot(total time.Duration) PullStats {
	return PullStats{
		Bytes:  m.bytes.Load(),
		Fetch:  time.Duration(m.fetchNanos.Load()),
		Verify: time.Duration(m.verifyNanos.Load()),
		Unpack: time.Duration(m.unpackNanos.Load()),
		Total:  total,
	}
}

// transfer is the state of one pull shared by its HTTP transports.
type transfer struct {
	stats    pullMeter
	progress atomic.Int64 // unix nanos of the last byte or request
	start    time.Time
	report   func(PullStats) // called by watch at each tick (nil: none)
}

func newTransfer() *transfer {
	t := &transfer{start: time.Now()}
	t.touch()
	return t
}

func (t *transfer) touch() { t.progress.Store(time.Now().UnixNano()) }

// errStalled is the cancel cause when a pull makes no progress.
type errStalled struct{ idle time.Duration }

func (e errStalled) Error() string {
	return fmt.Sprintf("pull made no progress for %s", e.idle)
}

func (e errStalled) Unwrap() error { return errdefs.ErrUnavailable }

// watch cancels the pull when no byte arrives for timeout, and reports
// progress at each tick. The returned function stops the watchdog and
// returns once it reports no more.
func (t *transfer) watch(ctx context.Context, cancel context.CancelCauseFunc, timeout time.Duration) func() {
	done := make(chan struct{})
	exited := make(chan struct{})
	tick := min(timeout/4, time.Second)
	go func() {
		defer close(exited)
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-ticker.C:
				if t.report != nil {
					t.report(t.stats.snapshot(time.Since(t.start)))
				}
				if idle := time.Since(time.Unix(0, t.progress.Load())); idle > timeout {
					cancel(errStalled{idle: timeout})
					return
				}
			}
		}
	}()
	return func() { close(done); <-exited }
}

// verifyingIngester checks every blob against the digest and size the
// registry's manifest promised before the content store keeps it, and
// meters the time spent hashing and writing.
type verifyingIngester struct {
	content.Ingester
	meter *pullMeter
}

func (v verifyingIngester) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := v.Ingester.Writer(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &verifyingWriter{Writer: w, meter: v.meter}, nil
}

type verifyingWriter struct {
	content.Writer
	meter *pullMeter
}

func (w *verifyingWriter) Write(p []byte) (int, error) {
	start := time.Now()
	n, err := w.Writer.Write(p)
	w.meter.verifyNanos.Add(int64(time.Since(start)))
	return n, err
}

func (w *verifyingWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	if expected != "" {
		if got := w.Digest(); got != expected {
			return fmt.Errorf("blob %s: received content has digest %s: %w", expected, got, errdefs.ErrDataLoss)
		}
	}
	if size > 0 {
		st, err := w.Status()
		if err == nil && st.Offset != size {
			return fmt.Errorf("blob %s: received %d bytes, expected %d: %w", expected, st.Offset, size, errdefs.ErrDataLoss)
		}
	}
	return w.Writer.Commit(ctx, size, expected, opts...)
}
