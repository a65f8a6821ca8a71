//go:build !guest

package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// How often progress is printed: on a terminal one line is rewritten in
// place, elsewhere (a log, a pipe) a line is added now and then. An
// operation that ends before the first report prints nothing.
const (
	progressTTYEvery  = 250 * time.Millisecond
	progressLineEvery = 5 * time.Second
)

// progressMeter reports how far a long operation is on standard error.
type progressMeter struct {
	w         io.Writer
	label     string
	total     int64  // 0: unknown
	finishing string // said once done reaches total (what follows the counted part)
	tty       bool
	start     time.Time

	done    atomic.Int64
	quit    chan struct{}
	exited  chan struct{}
	mu      sync.Mutex // guards printed and writes to w
	printed bool
}

// startProgress starts reporting on w, as a terminal line when w is one.
func startProgress(w io.Writer, label string, total int64, finishing string) *progressMeter {
	tty := isTerminal(w)
	every := progressLineEvery
	if tty {
		every = progressTTYEvery
	}
	return newProgress(w, label, total, finishing, every, tty)
}

func newProgress(w io.Writer, label string, total int64, finishing string, every time.Duration, tty bool) *progressMeter {
	p := &progressMeter{w: w, label: label, total: total, finishing: finishing, tty: tty, start: time.Now(),
		quit: make(chan struct{}), exited: make(chan struct{})}
	go p.loop(every)
	return p
}

func (p *progressMeter) loop(every time.Duration) {
	defer close(p.exited)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
			p.print()
		}
	}
}

// add counts n more bytes done.
func (p *progressMeter) add(n int64) { p.done.Add(n) }

// set sets the bytes done.
func (p *progressMeter) set(n int64) { p.done.Store(n) }

// stop ends the reports; when any was printed, a last one says how it
// ended.
func (p *progressMeter) stop(ok bool) {
	close(p.quit)
	<-p.exited
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.printed {
		return
	}
	outcome := "done"
	if !ok {
		outcome = "failed"
	}
	line := fmt.Sprintf("%s: %s, %s in %s", p.label, outcome, humanSize(p.done.Load()),
		time.Since(p.start).Round(100*time.Millisecond))
	p.write(line, true)
}

func (p *progressMeter) print() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.write(progressLine(p.label, p.done.Load(), p.total, time.Since(p.start), p.finishing), false)
	p.printed = true
}

// write puts out one report: in place on a terminal, as a line elsewhere.
// Callers hold p.mu.
func (p *progressMeter) write(line string, final bool) {
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r\x1b[K%s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

// progressLine is one report: bytes done (of the total when known), the
// rate, and what follows once the counted part is done.
func progressLine(label string, done, total int64, elapsed time.Duration, finishing string) string {
	rate := ""
	if s := elapsed.Seconds(); s > 0 {
		rate = ", " + humanSize(int64(float64(done)/s)) + "/s"
	}
	if total <= 0 {
		return fmt.Sprintf("%s: %s%s", label, humanSize(done), rate)
	}
	if done >= total && finishing != "" {
		return fmt.Sprintf("%s: %s %s", label, humanSize(total), finishing)
	}
	pct := min(100*done/total, 100)
	return fmt.Sprintf("%s: %s of %s (%d%%)%s", label, humanSize(done), humanSize(total), pct, rate)
}

// humanSize writes bytes in SI units with three significant digits, as
// crictl and docker do: 999 B, 1.50 kB, 12.3 MB, 456 GB.
func humanSize(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"kB", "MB", "GB", "TB", "PB", "EB"}
	v := float64(n) / 1000
	u := 0
	for v >= 999.5 && u < len(units)-1 {
		v /= 1000
		u++
	}
	switch {
	case v < 9.995:
		return fmt.Sprintf("%.2f %s", v, units[u])
	case v < 99.95:
		return fmt.Sprintf("%.1f %s", v, units[u])
	}
	return fmt.Sprintf("%.0f %s", v, units[u])
}

// countingWriter counts what goes through it into a progressMeter.
type countingWriter struct {
	w io.Writer
	p *progressMeter
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.p.add(int64(n))
	return n, err
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
