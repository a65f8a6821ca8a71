package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// logLines decodes JSON log output into its records.
func logLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func newTestLogger(b *bytes.Buffer) *slog.Logger {
	return slog.New(LogHandler(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

func TestLogHandler(t *testing.T) {
	rpcCtx := withRPC(context.Background(), "/svc/M", "abc123")
	tests := []struct {
		name    string
		log     func(l *slog.Logger)
		wantRPC any
		wantReq any
	}{
		{"context of an RPC", func(l *slog.Logger) { l.InfoContext(rpcCtx, "x") }, "/svc/M", "abc123"},
		{"through With and a group", func(l *slog.Logger) { l.With("component", "pods").WithGroup("g").InfoContext(rpcCtx, "x") }, "/svc/M", "abc123"},
		{"no context", func(l *slog.Logger) { l.Info("x") }, nil, nil},
		{"another context", func(l *slog.Logger) { l.InfoContext(context.Background(), "x") }, nil, nil},
		{"logger already names the request", func(l *slog.Logger) { l.With("req", "own").InfoContext(rpcCtx, "x") }, nil, "own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			tt.log(newTestLogger(&b))
			rec := logLines(t, &b)[0]
			if g, ok := rec["g"].(map[string]any); ok { // attributes added under an open group
				rec = g
			}
			if diff := cmp.Diff([]any{tt.wantRPC, tt.wantReq}, []any{rec["rpc"], rec["req"]}); diff != "" {
				t.Errorf("rpc, req (-want +got):\n%s", diff)
			}
		})
	}
	if RequestID(rpcCtx) != "abc123" || RequestID(context.Background()) != "" {
		t.Error("RequestID")
	}
}

// A line the engine logs with the RPC's context carries the request ID of
// the interceptor's own line for that call, in unary and streaming calls.
func TestInterceptorsCarryRequestID(t *testing.T) {
	var b bytes.Buffer
	log := newTestLogger(&b)
	engine := log.With("component", "pods")
	unary := UnaryInterceptor(log, nil)
	_, _ = unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/svc/Unary"},
		func(ctx context.Context, _ any) (any, error) {
			engine.InfoContext(ctx, "engine step")
			return nil, nil
		})
	stream := StreamInterceptor(log, nil)
	_ = stream(nil, fakeStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/svc/Stream"},
		func(_ any, ss grpc.ServerStream) error {
			engine.InfoContext(ss.Context(), "engine step")
			return nil
		})
	recs := logLines(t, &b)
	if len(recs) != 4 {
		t.Fatalf("%d log lines, want an engine line and an rpc line per call:\n%s", len(recs), b.String())
	}
	for i := 0; i < 4; i += 2 {
		eng, rpc := recs[i], recs[i+1]
		if eng["msg"] != "engine step" || rpc["msg"] != "rpc done" {
			t.Fatalf("unexpected lines %v / %v", eng, rpc)
		}
		if eng["req"] == nil || eng["req"] != rpc["req"] || eng["rpc"] != rpc["rpc"] || eng["component"] != "pods" {
			t.Errorf("engine line %v does not name the call of %v", eng, rpc)
		}
	}
	if recs[0]["req"] == recs[2]["req"] {
		t.Error("two calls share a request ID")
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

func (fakeStream) SetTrailer(metadata.MD) {}
