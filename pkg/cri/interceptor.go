package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/cradle-runtime/cradle/pkg/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RequestIDTrailer is the trailer that gives the client the request ID its
// call was logged under.
const RequestIDTrailer = "cradle-request-id"

// UnaryInterceptor logs each call with a request id, which it also puts in
// the call's context (see LogHandler) and answers in its trailer
// (RequestIDTrailer), turns panics into Internal, and maps engine errors
// (errdefs classes) to gRPC codes. An error with no class
// becomes Internal: Unknown never reaches kubelet by accident.
func UnaryInterceptor(log *slog.Logger, m *metrics.Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		id := requestID()
		ctx = withRPC(ctx, info.FullMethod, id)
		_ = grpc.SetTrailer(ctx, metadata.Pairs(RequestIDTrailer, id)) // fails only outside a gRPC server
		l := log.With(logKeyRPC, info.FullMethod, logKeyReq, id)
		defer func() {
			if p := recover(); p != nil {
				l.Error("panic in RPC handler", "panic", p, "stack", string(debug.Stack()))
				resp, err = nil, status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, p)
			}
			logResult(ctx, l, start, err)
			m.ObserveCRI(info.FullMethod, status.Code(err), time.Since(start))
		}()
		resp, err = handler(ctx, req)
		return resp, toStatus(err)
	}
}

// StreamInterceptor does for streaming RPCs what UnaryInterceptor does.
func StreamInterceptor(log *slog.Logger, m *metrics.Metrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		start := time.Now()
		id := requestID()
		ss = rpcStream{ServerStream: ss, ctx: withRPC(ss.Context(), info.FullMethod, id)}
		ss.SetTrailer(metadata.Pairs(RequestIDTrailer, id))
		l := log.With(logKeyRPC, info.FullMethod, logKeyReq, id)
		defer func() {
			if p := recover(); p != nil {
				l.Error("panic in RPC handler", "panic", p, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, p)
			}
			logResult(ss.Context(), l, start, err)
			m.ObserveCRI(info.FullMethod, status.Code(err), time.Since(start))
		}()
		return toStatus(handler(srv, ss))
	}
}

// rpcStream is a server stream whose context carries its RPC's identity.
type rpcStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s rpcStream) Context() context.Context { return s.ctx }

func logResult(ctx context.Context, l *slog.Logger, start time.Time, err error) {
	d := time.Since(start)
	if err == nil {
		l.Debug("rpc done", "duration", d)
		return
	}
	code := status.Code(err)
	level := slog.LevelWarn
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	case codes.Unimplemented, codes.NotFound:
		level = slog.LevelDebug
	}
	l.Log(ctx, level, "rpc failed", "code", code.String(), "error", status.Convert(err).Message(), "duration", d)
}

// toStatus maps err to a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errdefs.IsUnknown(err):
		return status.Error(codes.Unknown, err.Error())
	}
	st := status.Convert(errgrpc.ToGRPC(err))
	if st.Code() == codes.Unknown {
		return status.Error(codes.Internal, err.Error())
	}
	return status.Error(st.Code(), err.Error())
}

func requestID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("t%d", time.Now().UnixNano())
	}
	return hex.EncodeToString(b[:])
}
