package vmbox

import (
	"testing"
	"time"
)

func TestHostTSCKHz(t *testing.T) {
	khz, src, err := HostTSCKHz()
	if err != nil {
		t.Skipf("no TSC rate on this host: %v", err)
	}
	t.Logf("host TSC %d kHz (%s)", khz, src)
	if khz < 100_000 || khz > 10_000_000 {
		t.Fatalf("implausible TSC rate %d kHz", khz)
	}
	// Two measurements agree within 0.5%.
	if src != "measured against CLOCK_MONOTONIC_RAW" {
		return
	}
	again, err := measureTSCKHz(20 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if d := float64(again) - float64(khz); d > float64(khz)/200 || d < -float64(khz)/200 {
		t.Errorf("measurements disagree: %d vs %d kHz", khz, again)
	}
}
