package guest

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The CRI log format kubelet reads (containerd and CRI-O write it): one
// record a line,
//
//	<RFC3339Nano time> <stdout|stderr> <P|F> <content>\n
//
// F ends a line; P is a part of a line longer than maxLogLine, the rest
// following in later records.
const (
	streamStdout = "stdout"
	streamStderr = "stderr"
	maxLogLine   = 16 << 10
)

// logRecord is one record: content without its newline.
type logRecord struct {
	Partial bool
	Content []byte
}

// lineSplitter cuts one stream's output into records. It holds at most
// maxLogLine bytes of a line whose end has not come yet.
type lineSplitter struct {
	pending []byte
}

// split returns the records p completes, keeping an unfinished line.
func (s *lineSplitter) split(p []byte) []logRecord {
	var out []logRecord
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.pending = append(s.pending, p...)
			break
		}
		s.pending = append(s.pending, p[:i]...)
		out = s.cutLong(out)
		out = append(out, logRecord{Content: s.take(len(s.pending))})
		p = p[i+1:]
	}
	return s.cutLong(out)
}

// cutLong emits the pending line's leading maxLogLine-byte parts while more
// than maxLogLine bytes are pending.
func (s *lineSplitter) cutLong(out []logRecord) []logRecord {
	for len(s.pending) > maxLogLine {
		out = append(out, logRecord{Partial: true, Content: s.take(maxLogLine)})
	}
	return out
}

func (s *lineSplitter) take(n int) []byte {
	c := bytes.Clone(s.pending[:n])
	s.pending = append(s.pending[:0], s.pending[n:]...)
	return c
}

// flush ends the stream: a last line without its newline is a full record.
func (s *lineSplitter) flush() []logRecord {
	if len(s.pending) == 0 {
		return nil
	}
	return []logRecord{{Content: s.take(len(s.pending))}}
}

// appendRecord formats one record.
func appendRecord(dst []byte, at time.Time, stream string, r logRecord) []byte {
	dst = at.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, ' ')
	dst = append(dst, stream...)
	tag := " F "
	if r.Partial {
		tag = " P "
	}
	dst = append(dst, tag...)
	dst = append(dst, r.Content...)
	return append(dst, '\n')
}

// criLog is a container's log file. Each batch of records is one write to a
// file opened O_APPEND: stdout and stderr never interleave inside a record.
type criLog struct {
	path string // "": no log
	log  *slog.Logger

	mu     sync.Mutex
	f      *os.File
	failed bool // a write failed: reported once until the next success
	closed bool // for good: the container's output has ended
}

func openCRILog(path string, log *slog.Logger) (*criLog, error) {
	l := &criLog{path: path, log: log}
	if path == "" {
		return l, nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open the container log: %w", err)
	}
	return f, nil
}

// write appends records of stream. A failed write (the shared directory
// gone, a full disk) is logged and the output dropped: the container must
// not block on its log.
func (l *criLog) write(stream string, recs []logRecord) {
	if len(recs) == 0 {
		return
	}
	now := time.Now()
	var buf []byte
	for _, r := range recs {
		buf = appendRecord(buf, now, stream, r)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if _, err := l.f.Write(buf); err != nil {
		if !l.failed {
			l.log.Warn("write the container log", "path", l.path, "error", err)
		}
		l.failed = true
		return
	}
	l.failed = false
}

// reopen closes the file and opens path anew (log rotation: the host has
// renamed the file). The guest's cached dentry of the old name is dropped
// first: virtiofs would otherwise serve the renamed file for a second.
func (l *criLog) reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.path == "" || l.closed {
		return nil
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	dropDentries(l.log)
	f, err := openLogFile(l.path)
	if err != nil {
		return err
	}
	l.f = f
	return nil
}

// close closes the file for good; later writes are dropped.
func (l *criLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// dropDentries asks the kernel to drop its dentry and inode caches. Not
// being allowed to (a test run, not PID 1) is fine: it only shortens how
// long a stale name lives.
func dropDentries(log *slog.Logger) {
	err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0)
	if err != nil && !errors.Is(err, os.ErrPermission) {
		log.Debug("drop the dentry cache", "error", err)
	}
}
