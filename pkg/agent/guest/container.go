package guest

import (
	"fmt"
	"os"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// containerState is where a container is in its life.
//
//	 CreateContainer           StartContainer            init exited, output drained
//	─────────────────▶ Created ───────────────▶ Running ─────────────────────────────▶ Exited
//	                      │                                                              ▲
//	                      └─────────── killed before start (SignalContainer, OOM) ───────┘
//
// RemoveContainer may come in any state: it kills what is left and forgets
// the container. A create that fails is undone and leaves no container.
type containerState int

const (
	stateCreated containerState = iota
	stateRunning
	stateExited
)

var stateNames = [...]string{"created", "running", "exited"}

func (s containerState) String() string { return stateNames[s] }

// transitions lists the allowed moves.
var transitions = map[containerState][]containerState{
	stateCreated: {stateRunning, stateExited},
	stateRunning: {stateExited},
	stateExited:  {},
}

// transitionError is a call the container's state does not allow: a
// FailedPrecondition.
type transitionError struct {
	ID       string
	From, To containerState
}

func (e *transitionError) Error() string {
	return fmt.Sprintf("container %s is %s: cannot become %s", e.ID, e.From, e.To)
}

func (e *transitionError) Unwrap() error { return errdefs.ErrFailedPrecondition }

func checkTransition(id string, from, to containerState) error {
	for _, s := range transitions[from] {
		if s == to {
			return nil
		}
	}
	return &transitionError{ID: id, From: from, To: to}
}

// container is one container of the guest.
type container struct {
	id        string
	bundle    string
	cgroup    string // the spec's linux.cgroupsPath ("" : none to read)
	pid       int
	tty       bool
	stdinOnce bool

	out   *output
	log   *criLog
	stdin *os.File // the stdin pipe's write end or the pty master; nil: none

	mu       sync.Mutex
	state    containerState
	exit     *api.ContainerExit
	stdinEnd bool          // stdin was closed (stdin_once)
	reapedCh chan struct{} // closed once the init has been reaped
	done     chan struct{} // closed once exited: exit set, output drained, log closed
	removed  chan struct{} // closed when RemoveContainer forgets it
}

// markStarted moves a created container to running; one whose quick init
// has exited already (it did run) stays exited.
func (c *container) markStarted() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateExited {
		return nil
	}
	if err := checkTransition(c.id, c.state, stateRunning); err != nil {
		return err
	}
	c.state = stateRunning
	return nil
}

func (c *container) current() (containerState, *api.ContainerExit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.exit
}

// exited reports whether the container has exited (non-blocking).
func (c *container) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// reaped reports whether the init has exited (its exit may still be being
// recorded).
func (c *container) reaped() bool {
	select {
	case <-c.reapedCh:
		return true
	default:
		return false
	}
}

// writeStdin writes p to the container's stdin.
func (c *container) writeStdin(p []byte) error {
	if c.stdin == nil {
		return fmt.Errorf("container %s has no stdin: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	_, err := c.stdin.Write(p)
	return err
}

// closeStdin closes the container's stdin pipe (stdin_once). A terminal's
// is its pty master, which also carries its output: that is left open.
func (c *container) closeStdin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stdin == nil || c.tty || c.stdinEnd {
		return
	}
	c.stdinEnd = true
	c.stdin.Close()
}
