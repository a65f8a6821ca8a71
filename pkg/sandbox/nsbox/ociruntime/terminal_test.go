package ociruntime_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestTerminal(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			c := e.createStdin(t, true, false, "sh", "-c", "[ -t 1 ] && echo on a tty; exit 5")
			wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
