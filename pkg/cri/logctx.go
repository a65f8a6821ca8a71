package cri

import (
	"context"
	"log/slog"
)

// An RPC's identity travels in its context from the interceptor down
// through the engine, the image store and the network, so that each log
// line they write while serving it names it: the engine logs with
// Logger.InfoContext(ctx, …) and the handler LogHandler returns reads the
// identity back.

// rpcKey is the context key of the RPC being served.
type rpcKey struct{}

// rpcIdentity names one call.
type rpcIdentity struct {
	method string // e.g. /runtime.v1.RuntimeService/RunPodSandbox
	id     string // the request ID the interceptor assigned
}

// withRPC returns ctx carrying the identity of the RPC it serves.
func withRPC(ctx context.Context, method, id string) context.Context {
	return context.WithValue(ctx, rpcKey{}, rpcIdentity{method: method, id: id})
}

// RequestID returns the ID of the RPC ctx serves ("" when none).
func RequestID(ctx context.Context) string {
	r, _ := ctx.Value(rpcKey{}).(rpcIdentity)
	return r.id
}

// Log attributes naming the RPC, as the interceptor's own lines name it.
const (
	logKeyRPC = "rpc"
	logKeyReq = "req"
)

// LogHandler wraps h so that a record logged with the context of an RPC
// gets the RPC's rpc and req attributes, unless the logger already has
// them (the interceptor's own logger does).
func LogHandler(h slog.Handler) slog.Handler { return rpcHandler{h: h} }

type rpcHandler struct {
	h     slog.Handler
	named bool // the logger's attributes already name the request
}

func (r rpcHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r rpcHandler) Handle(ctx context.Context, rec slog.Record) error {
	if id, ok := ctx.Value(rpcKey{}).(rpcIdentity); ok && !r.named {
		rec = rec.Clone()
		rec.AddAttrs(slog.String(logKeyRPC, id.method), slog.String(logKeyReq, id.id))
	}
	return r.h.Handle(ctx, rec)
}

func (r rpcHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	named := r.named
	for _, a := range attrs {
		named = named || a.Key == logKeyReq
	}
	return rpcHandler{h: r.h.WithAttrs(attrs), named: named}
}

func (r rpcHandler) WithGroup(name string) slog.Handler {
	return rpcHandler{h: r.h.WithGroup(name), named: r.named}
}
