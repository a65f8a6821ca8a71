package ociruntime_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
)

func TestTerminal(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			ctx := context.Background()
			c := e.bundle(t, "true")
			s := spec(e.rootfs, c.cgroup, []string{"sh", "-c", "[ -t 1 ] && echo on a tty; exit 5"})
			s.Process.Terminal = true
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			pid, err := e.rt.Create(ctx, ociruntime.CreateOptions{ID: c.id, Bundle: c.bundle, LogPath: c.log, Terminal: true, Stdin: true})
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			c.pid = pid
			t.Cleanup(func() { e.deleteAndCheck(t, c) })
			if err := e.rt.Start(ctx, c.id); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			st, err := e.rt.Wait(wctx, c.id)
			if err != nil || st.ExitCode != 5 {
				t.Fatalf("Wait = %+v, %v; want exit code 5", st, err)
			}
			log := readFile(t, c.log)
			if !strings.Contains(log, " stdout F on a tty") {
				t.Errorf("log %q lacks the line written to the terminal", log)
			}
		})
	}
}
