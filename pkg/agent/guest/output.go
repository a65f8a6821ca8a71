package guest

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// output is a container's stdout and stderr (one stream with a terminal):
// read by the agent, written to its CRI log and to the attached clients.
type output struct {
	log  *criLog
	mu   sync.Mutex
	subs map[*subscriber]struct{}
	wg   sync.WaitGroup // the readers
}

// subscriber is an attached client; a nil writer does not want that stream.
type subscriber struct {
	stdout, stderr io.Writer
	gone           chan struct{} // closed when a write to it failed
	once           sync.Once
}

func newOutput(log *criLog) *output {
	return &output{log: log, subs: map[*subscriber]struct{}{}}
}

// read copies r (a pipe or a terminal's master) to the log and the
// subscribers until EOF (or EIO: a terminal whose last holder closed it).
func (o *output) read(stream string, r *os.File) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		defer r.Close()
		split := &lineSplitter{log: o.log, stream: stream}
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				_, _ = split.Write(buf[:n])
				o.publish(stream, buf[:n])
			}
			if err != nil {
				split.flush()
				return
			}
		}
	}()
}

// subscriberWrite bounds a write to an attached client: a stuck client is
// cut off rather than stall the container.
const subscriberWrite = 10 * time.Second

func (o *output) publish(stream string, p []byte) {
	o.mu.Lock()
	subs := make([]*subscriber, 0, len(o.subs))
	for s := range o.subs {
		subs = append(subs, s)
	}
	o.mu.Unlock()
	for _, s := range subs {
		w := s.stdout
		if stream == "stderr" {
			w = s.stderr
		}
		if w == nil {
			continue
		}
		if err := writeWithin(w, p, subscriberWrite); err != nil {
			o.unsubscribe(s)
			s.once.Do(func() { close(s.gone) })
		}
	}
}

// writeWithin writes p to w, giving up after d when w can have deadlines.
func writeWithin(w io.Writer, p []byte, d time.Duration) error {
	if dw, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = dw.SetWriteDeadline(time.Now().Add(d))
	}
	_, err := w.Write(p)
	return err
}

func (o *output) subscribe(stdout, stderr io.Writer) *subscriber {
	s := &subscriber{stdout: stdout, stderr: stderr, gone: make(chan struct{})}
	o.mu.Lock()
	o.subs[s] = struct{}{}
	o.mu.Unlock()
	return s
}

func (o *output) unsubscribe(s *subscriber) {
	o.mu.Lock()
	delete(o.subs, s)
	o.mu.Unlock()
}

// drain waits until the readers are done, at most d.
func (o *output) drain(d time.Duration) error {
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(d):
		return errors.New("output still open")
	}
}
