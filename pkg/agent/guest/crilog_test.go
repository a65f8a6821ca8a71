package guest

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestLineSplitter(t *testing.T) {
	long := strings.Repeat("x", maxLogLine)
	full := func(s string) logRecord { return logRecord{Content: []byte(s)} }
	part := func(s string) logRecord { return logRecord{Partial: true, Content: []byte(s)} }
	tests := []struct {
		name   string
		chunks []string
		want   []logRecord // after all chunks and the flush
	}{
		{"one line", []string{"hello\n"}, []logRecord{full("hello")}},
		{"two lines in one read", []string{"a\nb\n"}, []logRecord{full("a"), full("b")}},
		{"line across reads", []string{"hel", "lo\nwor", "ld\n"}, []logRecord{full("hello"), full("world")}},
		{"empty lines", []string{"\n\n"}, []logRecord{full(""), full("")}},
		{"last line without newline", []string{"a\nb"}, []logRecord{full("a"), full("b")}},
		{"exactly the limit", []string{long + "\n"}, []logRecord{full(long)}},
		{"one over the limit", []string{long + "y\n"}, []logRecord{part(long), full("y")}},
		{"long line across reads", []string{long[:100], long[100:] + "zz", "z\n"}, []logRecord{part(long), full("zzz")}},
		{"two limits and more", []string{long + long + "end"}, []logRecord{part(long), part(long), full("end")}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s lineSplitter
			var got []logRecord
			for _, c := range tt.chunks {
				got = append(got, s.split([]byte(c))...)
			}
			got = append(got, s.flush()...)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestAppendRecord(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	tests := []struct {
		stream string
		rec    logRecord
		want   string
	}{
		{streamStdout, logRecord{Content: []byte("hi there")}, "2026-01-02T03:04:05.0000006Z stdout F hi there\n"},
		{streamStderr, logRecord{Partial: true, Content: []byte("part")}, "2026-01-02T03:04:05.0000006Z stderr P part\n"},
		{streamStdout, logRecord{}, "2026-01-02T03:04:05.0000006Z stdout F \n"},
	}
	for _, tt := range tests {
		if got := string(appendRecord(nil, at, tt.stream, tt.rec)); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// TestCRILogReopen writes, rotates the file as kubelet does (rename), and
// checks that writes after reopen land in a new file at the path.
func TestCRILogReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	l, err := openCRILog(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.write(streamStdout, []logRecord{{Content: []byte("before")}})
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	l.write(streamStderr, []logRecord{{Content: []byte("after")}})
	l.close()
	l.write(streamStderr, []logRecord{{Content: []byte("dropped")}})
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{path + ".1": " stdout F before\n", path: " stderr F after\n"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(string(b), "\n"); len(lines) != 2 || !strings.HasSuffix(string(b), want) {
			t.Errorf("%s = %q, want one record ending %q", p, b, want)
		}
	}
}
