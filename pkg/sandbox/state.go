package sandbox

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// PodState is where a pod sandbox is in its life.
//
//	 RunPodSandbox            StopPodSandbox           RemovePodSandbox
//	──────────────▶ Creating ──────▶ Ready ──────────────▶ NotReady ──────────────▶ Removed
//	                   │   step failed, released                 ▲           ▲
//	                   ├─────────────────────────────────────────┼───────────┘
//	                   │                  (infra process died)   │
//	                   └──▶ Unknown ◀── stop or release failed ── any
//	                          │  (listed, retried by Stop/RemovePodSandbox and at start;
//	                          └──▶ NotReady, Removed              never forgotten)
//
// Creating is persisted before the first resource is made, so recovery
// knows to undo a create that a crash interrupted. Every change goes
// through setPodState / setContainerState, which check this table and
// checkpoint the object.
type PodState int

// Pod states.
const (
	PodCreating PodState = iota
	PodReady
	PodNotReady
	PodRemoved
	PodUnknown
)

var podStateNames = [...]string{"Creating", "Ready", "NotReady", "Removed", "Unknown"}

func (s PodState) String() string {
	if int(s) < len(podStateNames) {
		return podStateNames[s]
	}
	return fmt.Sprintf("PodState(%d)", int(s))
}

// podTransitions lists the allowed moves.
var podTransitions = map[PodState][]PodState{
	PodCreating: {PodReady, PodNotReady, PodRemoved, PodUnknown},
	PodReady:    {PodNotReady, PodUnknown},
	PodNotReady: {PodRemoved, PodUnknown},
	PodUnknown:  {PodNotReady, PodRemoved},
	PodRemoved:  {},
}

// ContainerState is where a container is in its life.
//
//	 CreateContainer            created          StartContainer           exit / StopContainer
//	────────────────▶ Creating ────────▶ Created ───────────────▶ Running ─────────────────────▶ Exited
//	                                        │   start failed                                        ▲
//	                                        └───────────────────────────────────────────────────────┘
//	  any ──▶ Unknown (its process cannot be found, or its removal failed) ──▶ Running, Exited
//
// Recovery asks the runtime whatever the record says: a Created container
// that runs is Running, one recorded Exited whose process still runs is
// killed.
//
// Creating is persisted before the first resource exists, so recovery
// knows to undo a create that a crash interrupted.
type ContainerState int

// Container states.
const (
	ContainerCreated ContainerState = iota
	ContainerRunning
	ContainerExited
	ContainerUnknown
	ContainerCreating
)

var containerStateNames = [...]string{"Created", "Running", "Exited", "Unknown", "Creating"}

func (s ContainerState) String() string {
	if int(s) < len(containerStateNames) {
		return containerStateNames[s]
	}
	return fmt.Sprintf("ContainerState(%d)", int(s))
}

var containerTransitions = map[ContainerState][]ContainerState{
	ContainerCreating: {ContainerCreated, ContainerUnknown},
	ContainerCreated:  {ContainerRunning, ContainerExited, ContainerUnknown},
	ContainerRunning:  {ContainerExited, ContainerUnknown},
	ContainerUnknown:  {ContainerExited, ContainerRunning},
	ContainerExited:   {ContainerUnknown},
}

// TransitionError is returned for a move the state machine does not allow.
// It is a FailedPrecondition: the object is not in a state for the call.
type TransitionError struct {
	Object   string // "pod" or "container"
	ID       string
	From, To string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("%s %s is %s: cannot become %s", e.Object, e.ID, e.From, e.To)
}

// Unwrap classifies the error for the gRPC edge.
func (e *TransitionError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// CheckPodTransition allows or refuses a pod's move; staying put is allowed.
func CheckPodTransition(id string, from, to PodState) error {
	if from == to || allowed(podTransitions[from], to) {
		return nil
	}
	return &TransitionError{Object: "pod", ID: id, From: from.String(), To: to.String()}
}

// CheckContainerTransition allows or refuses a container's move; staying put
// is allowed.
func CheckContainerTransition(id string, from, to ContainerState) error {
	if from == to || allowed(containerTransitions[from], to) {
		return nil
	}
	return &TransitionError{Object: "container", ID: id, From: from.String(), To: to.String()}
}

func allowed[S comparable](next []S, to S) bool {
	for _, s := range next {
		if s == to {
			return true
		}
	}
	return false
}

// setPodState moves pod to `to`, checking the move, and checkpoints it.
// Callers hold the pod's lock.
func (m *Manager) setPodState(pod *Pod, to PodState) error {
	if err := CheckPodTransition(pod.ID, pod.State, to); err != nil {
		return err
	}
	pod.State = to
	return m.save(pod)
}

// setContainerState moves c to `to`, checking the move, and checkpoints it
// (with whatever else the caller changed). Callers hold its entry's lock,
// or own c alone while it is created.
func (m *Manager) setContainerState(c *Container, to ContainerState) error {
	if err := CheckContainerTransition(c.ID, c.State, to); err != nil {
		return err
	}
	c.State = to
	return m.saveContainer(c)
}
