package guest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// output carries a container's output from its pipes (or its pty) to its
// CRI log and to the attach clients subscribed at the time. It reads each
// stream until EOF; done is closed once all have ended and the log holds
// everything they wrote.
type output struct {
	log     *criLog
	streams []*os.File

	mu   sync.Mutex
	subs map[*subscriber]struct{}
	done chan struct{}
}

// subscriberQueue bounds the reads queued for one attach client; a client
// that falls further behind is cut off rather than stall the container.
const subscriberQueue = 128

// chunk is one read of a stream.
type chunk struct {
	stream string
	data   []byte
}

// subscriber is an attach client's view of the output from when it came.
type subscriber struct {
	stdout, stderr bool
	ch             chan chunk // closed when the output ends or the client lags
	lagged         bool       // set before ch is closed for lagging
}

func newOutput(log *criLog) *output {
	return &output{log: log, subs: map[*subscriber]struct{}{}, done: make(chan struct{})}
}

// start reads the named streams (stream name → reader) until each ends.
func (o *output) start(files map[string]*os.File) {
	o.mu.Lock()
	for _, f := range files {
		o.streams = append(o.streams, f)
	}
	o.mu.Unlock()
	var wg sync.WaitGroup
	for name, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.copy(name, f)
		}()
	}
	go func() {
		wg.Wait()
		o.finish()
	}()
}

// copy reads one stream to its end: EOF of a pipe, EIO of a pty master
// whose slave every process has closed, or the file closed under it.
func (o *output) copy(stream string, f *os.File) {
	var split lineSplitter
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			o.log.write(stream, split.split(buf[:n]))
			o.publish(stream, buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, unix.EIO) && !errors.Is(err, os.ErrClosed) {
				o.log.log.Warn("read container output", "stream", stream, "error", err)
			}
			break
		}
	}
	o.log.write(stream, split.flush())
}

// publish hands a copy of p to the subscribers that want stream.
func (o *output) publish(stream string, p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.subs) == 0 {
		return
	}
	c := chunk{stream: stream, data: bytes.Clone(p)}
	for s := range o.subs {
		if (c.stream == streamStdout && !s.stdout) || (c.stream == streamStderr && !s.stderr) {
			continue
		}
		select {
		case s.ch <- c:
		default:
			s.lagged = true
			close(s.ch)
			delete(o.subs, s)
		}
	}
}

// finish ends every subscription once all streams have ended.
func (o *output) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s := range o.subs {
		close(s.ch)
		delete(o.subs, s)
	}
	for _, f := range o.streams {
		f.Close()
	}
	close(o.done)
}

// subscribe returns a subscription to what the streams write from now on;
// its channel is closed at once if the output has already ended.
func (o *output) subscribe(stdout, stderr bool) *subscriber {
	s := &subscriber{stdout: stdout, stderr: stderr, ch: make(chan chunk, subscriberQueue)}
	o.mu.Lock()
	defer o.mu.Unlock()
	select {
	case <-o.done:
		close(s.ch)
	default:
		o.subs[s] = struct{}{}
	}
	return s
}

// unsubscribe drops s (the client detached).
func (o *output) unsubscribe(s *subscriber) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.subs[s]; ok {
		delete(o.subs, s)
		close(s.ch)
	}
}

// isLagged reads s.lagged under the lock that set it.
func (o *output) isLagged(s *subscriber) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return s.lagged
}

// abort closes the streams: readers end at once even if a process still
// holds the other ends (a background child outliving the container's init).
func (o *output) abort() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range o.streams {
		f.Close()
	}
}
