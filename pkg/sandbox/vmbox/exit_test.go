package vmbox

import (
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// The guest's clock runs ahead of the host's now and then (TCG drift):
// an exit it stamps in the future is recorded as now, never later.
func TestExitStampedInTheFutureIsNow(t *testing.T) {
	before := time.Now()
	ahead := before.Add(150 * time.Millisecond)
	st := exitStatus(&api.ContainerExit{ExitCode: 3, FinishedAtUnixNs: ahead.UnixNano()})
	if after := time.Now(); st.FinishedAt.Before(before) || st.FinishedAt.After(after) {
		t.Errorf("finished at %v, want between %v and %v", st.FinishedAt, before, after)
	}
	if st.Code != 3 {
		t.Errorf("code %d", st.Code)
	}
	past := before.Add(-time.Second)
	if st := exitStatus(&api.ContainerExit{FinishedAtUnixNs: past.UnixNano()}); !st.FinishedAt.Equal(past) {
		t.Errorf("an exit in the past moved: %v, want %v", st.FinishedAt, past)
	}
}
