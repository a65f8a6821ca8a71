package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
)

// TestReleaseMemoryFreesPooledBuffers: a buffer last used through a
// sync.Pool (as containerd's content.Copy keeps its 1 MiB buffers) is
// freed, and its pages returned to the OS, by releaseMemory at once; a
// single collection (debug.FreeOSMemory alone) only moves it to the pool's
// victim cache.
func TestReleaseMemoryFreesPooledBuffers(t *testing.T) {
	const size = 16 << 20
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	read := func() (objects, free uint64) {
		metrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64()
	}
	runtime.GC()
	runtime.GC()
	base, _ := read()

	var pool sync.Pool
	func() {
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = 1 // resident
		}
		pool.Put(&buf)
	}()
	releaseMemory()
	objects, free := read()
	if objects > base+size/2 {
		t.Errorf("heap objects after releaseMemory: %d MiB over the %d MiB before: the pooled buffer is still live",
			(objects-base)>>20, base>>20)
	}
	if free > size/2 {
		t.Errorf("free heap pages kept after releaseMemory: %d MiB, want them returned to the OS", free>>20)
	}
	runtime.KeepAlive(&pool)
}

// TestTuneMemory: the daemon's GOGC unless the operator set one; heap
// profiling only with the debug server.
func TestTuneMemory(t *testing.T) {
	rate := runtime.MemProfileRate
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { runtime.MemProfileRate = rate; debug.SetGCPercent(old) })

	tuneMemory(true, true)
	if got := debug.SetGCPercent(100); got != 100 || runtime.MemProfileRate != rate {
		t.Errorf("with GOGC set and the debug server: GOGC %d, profile rate %d; want both unchanged", got, runtime.MemProfileRate)
	}
	tuneMemory(false, false)
	if got := debug.SetGCPercent(100); got != gcPercent || runtime.MemProfileRate != 0 {
		t.Errorf("defaults: GOGC %d, profile rate %d; want %d and 0", got, runtime.MemProfileRate, gcPercent)
	}
}
