package sandbox

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestPodTransitions(t *testing.T) {
	tests := []struct {
		from, to PodState
		ok       bool
	}{
		{PodCreating, PodReady, true},
		{PodReady, PodNotReady, true},
		{PodNotReady, PodRemoved, true},
		{PodReady, PodReady, true},
		{PodReady, PodRemoved, false}, // must stop first
		{PodRemoved, PodReady, false},
		{PodNotReady, PodReady, false}, // a stopped sandbox is never restarted
		{PodUnknown, PodRemoved, true},
	}
	for _, tt := range tests {
		err := CheckPodTransition("p", tt.from, tt.to)
		if (err == nil) != tt.ok {
			t.Errorf("%s → %s: %v, want ok=%v", tt.from, tt.to, err, tt.ok)
		}
		var te *TransitionError
		if err != nil && (!errors.As(err, &te) || !errdefs.IsFailedPrecondition(err)) {
			t.Errorf("%s → %s: %v is not a FailedPrecondition TransitionError", tt.from, tt.to, err)
		}
	}
}

func TestContainerTransitions(t *testing.T) {
	tests := []struct {
		from, to ContainerState
		ok       bool
	}{
		{ContainerCreated, ContainerRunning, true},
		{ContainerRunning, ContainerExited, true},
		{ContainerCreated, ContainerExited, true},
		{ContainerExited, ContainerRunning, false}, // containers are not restarted; kubelet makes a new one
		{ContainerUnknown, ContainerExited, true},
	}
	for _, tt := range tests {
		if err := CheckContainerTransition("c", tt.from, tt.to); (err == nil) != tt.ok {
			t.Errorf("%s → %s: %v, want ok=%v", tt.from, tt.to, err, tt.ok)
		}
	}
	if s := ContainerState(9).String(); s != "ContainerState(9)" {
		t.Errorf("String of an unknown state = %q", s)
	}
}
