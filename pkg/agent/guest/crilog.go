package guest

import (
	"bytes"
	"os"
	"sync"
	"time"
)

// maxLogLine is the longest CRI log entry: longer lines are split into
// partial (P) entries, as containerd does.
const maxLogLine = 16 << 10

// criLog writes a container's output in the CRI log format:
// "<RFC3339Nano> <stdout|stderr> <P|F> <content>\n". A path of "" discards.
type criLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openCRILog(path string) (*criLog, error) {
	l := &criLog{path: path}
	if path == "" {
		return l, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

func (l *criLog) entry(stream string, content []byte, partial bool) {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.Grow(len(content) + 64)
	b.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(content)
	b.WriteByte('\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_, _ = l.f.Write(b.Bytes())
	}
}

// reopen closes the file and opens the path anew (the host renamed it).
// The guest's dentry for the old name may still be cached (virtiofs keeps
// entries for a second): dropping the dentry cache makes the open look
// the name up on the host again.
func (l *criLog) reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.path == "" {
		return nil
	}
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0)
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	l.f = f
	return nil
}

func (l *criLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// lineSplitter turns one stream's chunks into log entries: whole lines as
// F entries, and at most maxLogLine bytes of a longer line per P entry.
type lineSplitter struct {
	log    *criLog
	stream string
	buf    []byte
}

func (s *lineSplitter) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		switch {
		case i >= 0 && i <= maxLogLine:
			s.log.entry(s.stream, s.buf[:i], false)
			s.buf = s.buf[i+1:]
		case len(s.buf) > maxLogLine:
			s.log.entry(s.stream, s.buf[:maxLogLine], true)
			s.buf = s.buf[maxLogLine:]
		default:
			s.buf = append(make([]byte, 0, len(s.buf)), s.buf...) // do not pin a grown array
			return len(p), nil
		}
	}
}

// flush writes what is left (output that did not end in a newline).
func (s *lineSplitter) flush() {
	if len(s.buf) > 0 {
		s.log.entry(s.stream, s.buf, false)
		s.buf = nil
	}
}
