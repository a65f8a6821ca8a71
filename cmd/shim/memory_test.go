package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
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

// TestExeMappings: the executable's private read-only mappings, by device
// and inode or by path, and none that holds anonymous (copy-on-write) pages.
func TestExeMappings(t *testing.T) {
	smaps := `00400000-00e4c000 r-xp 00000000 fe:00 9978537                            /usr/bin/cradle
Size:              10544 kB
Rss:                9392 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
00e4c000-020cd000 r--p 00a4c000 fe:00 9978537                            /usr/bin/cradle
Rss:               10244 kB
Anonymous:             0 kB
020cd000-0215c000 rw-p 01ccd000 fe:00 9978537                            /usr/bin/cradle
Rss:                 572 kB
Anonymous:           416 kB
0215c000-041a9000 rw-p 00000000 00:00 0
Rss:                 196 kB
Anonymous:           196 kB
7f0000000000-7f0000010000 r-xp 00001000 fe:00 9978537                            /usr/bin/cradle
Rss:                  64 kB
Anonymous:             4 kB
7f0000100000-7f0000200000 r-xp 00000000 fe:00 123                                /usr/lib/other.so
Rss:                  12 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 r--p 00000000 00:2f 77                                 /opt/my cradle/cradle
Rss:                  20 kB
Anonymous:             0 kB
7fff38b2c000-7fff38b4d000 rw-p 00000000 00:00 0                          [stack]
Rss:                  20 kB
`
	got := exeMappings([]byte(smaps), "/opt/my cradle/cradle", 0xfe, 0, 9978537)
	want := []exeMapping{
		{start: 0x400000, end: 0xe4c000, rss: 9392 << 10},
		{start: 0xe4c000, end: 0x20cd000, rss: 10244 << 10},
		{start: 0x7f0000300000, end: 0x7f0000400000, rss: 20 << 10},
	}
	if !slices.Equal(got, want) {
		t.Errorf("exeMappings = %+v\nwant %+v", got, want)
	}
}

// TestUnmapExecutable: the test binary's own code and read-only data are
// unmapped (their RSS falls) and it goes on running, mapping back what it
// runs.
func TestUnmapExecutable(t *testing.T) {
	resident := func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/exe", &st); err != nil {
			t.Fatal(err)
		}
		path, err := os.Readlink("/proc/self/exe")
		if err != nil {
			t.Fatal(err)
		}
		smaps, err := os.ReadFile("/proc/self/smaps")
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, m := range exeMappings(smaps, path, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino) {
			n += m.rss
		}
		return n
	}
	before := resident()
	if before == 0 {
		t.Fatal("no resident page of the executable found in /proc/self/smaps")
	}
	unmapped, err := unmapExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := resident()
	t.Logf("executable resident: %d KiB before, %d KiB unmapped, %d KiB after", before>>10, unmapped>>10, after>>10)
	if unmapped < before/2 {
		t.Errorf("unmapped %d KiB of %d KiB resident", unmapped>>10, before>>10)
	}
	if after >= before/2 {
		t.Errorf("resident after: %d KiB, before %d KiB: the mappings were not dropped", after>>10, before>>10)
	}
	// Code not run since is mapped back on its first call.
	if got := fmt.Sprintf("%x", sha256.Sum256([]byte("cradle"))); len(got) != 64 {
		t.Errorf("sha256 after unmapping: %q", got)
	}
}
