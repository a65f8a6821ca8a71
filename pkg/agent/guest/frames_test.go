package guest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

func TestReadInbound(t *testing.T) {
	type frame struct {
		typ byte
		p   []byte
	}
	tests := []struct {
		name      string
		frames    []frame
		stdinErr  error // what writing stdin returns
		wantCalls []string
		wantErr   bool
	}{
		{"stdin, resize, close", []frame{
			{api.FrameStdin, []byte("ab")}, {api.FrameResize, api.ResizePayload(80, 24)},
			{api.FrameStdin, []byte("c")}, {api.FrameCloseStdin, nil}, {api.FrameStdin, []byte("late")},
		}, nil, []string{"stdin ab", "resize 80x24", "stdin c", "close"}, false},
		{"stdin dropped after a failed write", []frame{
			{api.FrameStdin, []byte("a")}, {api.FrameStdin, []byte("b")}, {api.FrameResize, api.ResizePayload(1, 2)},
		}, errors.New("broken pipe"), []string{"stdin a", "resize 1x2"}, false},
		{"a bad resize frame", []frame{{api.FrameResize, []byte{1}}}, nil, nil, true},
		{"a frame only the guest sends", []frame{{api.FrameExit, api.ExitPayload(0)}}, nil, nil, true},
		{"nothing: the host closed", nil, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			for _, f := range tt.frames {
				if err := api.WriteFrame(&buf, f.typ, f.p); err != nil {
					t.Fatal(err)
				}
			}
			var calls []string
			h := inbound{
				stdin:      func(p []byte) error { calls = append(calls, "stdin "+string(p)); return tt.stdinErr },
				closeStdin: func() { calls = append(calls, "close") },
				resize: func(w, h uint16) {
					calls = append(calls, fmt.Sprintf("resize %dx%d", w, h))
				},
			}
			err := readInbound(&buf, h)
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantCalls, calls); diff != "" {
				t.Error(diff)
			}
		})
	}
}
