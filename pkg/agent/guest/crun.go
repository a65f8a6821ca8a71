package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// crun drives the OCI runtime binary (crun; runc takes the same commands
// but not --log-format for every one):
//
//	crun --root R [--log=file:L --log-format=json] create --bundle B --pid-file P [--console-socket S] ID
//	crun --root R start ID
//	crun --root R kill [--all] ID SIG
//	crun --root R delete -f ID
//	crun --root R [--log=file:L --log-format=json] exec --process F --pid-file P [--console-socket S] ID
//	crun --root R update --resources F ID
//
// create and exec get the container's (the process's) stdio as their own,
// so their errors are read from the JSON log file L; the other commands'
// from their stderr.
type crun struct {
	binary string
	root   string // crun's state directory (--root)
	reaper *Reaper
}

// crunError is a crun command that failed. Its class is Unknown on
// purpose: the runtime refused for a reason only its message tells.
type crunError struct {
	Command string
	Code    int32
	Message string
}

func (e *crunError) Error() string {
	return fmt.Sprintf("crun %s: exit status %d: %s", e.Command, e.Code, e.Message)
}

func (e *crunError) Unwrap() error { return errdefs.ErrUnknown }

// argv is crun's command line for one command; logFile "" leaves crun's
// messages on its stderr.
func (c *crun) argv(logFile string, command string, args ...string) []string {
	argv := []string{c.binary, "--root", c.root}
	if logFile != "" {
		argv = append(argv, "--log=file:"+logFile, "--log-format=json")
	}
	argv = append(argv, command)
	return append(argv, args...)
}

// crunDrain bounds how long a finished command's output is read: a child
// it left behind (there should be none) may hold the pipes.
const crunDrain = time.Second

// run runs a command that does not touch a container's stdio and returns
// its stdout. ctx ending kills it.
func (c *crun) run(ctx context.Context, command string, args ...string) ([]byte, error) {
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer stdoutR.Close()
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutW.Close()
		return nil, err
	}
	defer stderrR.Close()
	p, err := c.reaper.Start(c.argv("", command, args...), []*os.File{nil, stdoutW, stderrW})
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		return nil, err
	}
	stdout, stderr := readAsync(stdoutR), readAsync(stderrR)
	exit, err := c.wait(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("crun %s: %w", command, err)
	}
	out, errOut := collect(stdout, stdoutR), collect(stderr, stderrR)
	if exit.Status.ExitStatus() != 0 || exit.Status.Signaled() {
		return out, &crunError{Command: command, Code: exit.Code(), Message: strings.TrimSpace(string(errOut))}
	}
	return out, nil
}

// wait waits for p; ctx ending kills it (and still waits, so it is reaped).
func (c *crun) wait(ctx context.Context, p *Proc) (Exit, error) {
	select {
	case e := <-p.Exit:
		return e, nil
	case <-ctx.Done():
		_ = unix.Kill(p.Pid, unix.SIGKILL)
		<-p.Exit
		return Exit{}, ctx.Err()
	}
}

// readAsync reads r to its end in the background.
func readAsync(r io.Reader) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, 1<<20))
		ch <- b
	}()
	return ch
}

// collect takes what readAsync read, closing f if it takes longer than
// crunDrain.
func collect(ch <-chan []byte, f *os.File) []byte {
	select {
	case b := <-ch:
		return b
	case <-time.After(crunDrain):
		f.Close()
		return <-ch
	}
}

// logErrors returns the messages of level error in crun's JSON log file.
func logErrors(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return parseLogErrors(b)
}

// parseLogErrors reads crun's --log-format=json records ({"msg", "level",
// "time"} objects one after another) and joins the error messages.
func parseLogErrors(b []byte) string {
	var msgs []string
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var rec struct {
			Msg   string `json:"msg"`
			Level string `json:"level"`
		}
		if err := dec.Decode(&rec); err != nil {
			if !errors.Is(err, io.EOF) {
				msgs = append(msgs, strings.TrimSpace(string(b))) // not JSON: all of it
			}
			break
		}
		if rec.Level == "error" {
			msgs = append(msgs, rec.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}
