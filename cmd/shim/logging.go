//go:build !guest

package main

import (
	"context"
	"io"
	"log/slog"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// bridgeContainerdLogs routes the logging of containerd's libraries (logrus,
// behind github.com/containerd/log) into cradle's slog logger. Below debug,
// containerd's info chatter is dropped: cradle logs what matters itself;
// and its known noise is logged at debug (containerdNoise).
func bridgeContainerdLogs(l *slog.Logger, level string) {
	lg := clog.L.Logger
	lg.SetOutput(io.Discard)
	lg.SetLevel(logrus.WarnLevel)
	if level == "debug" {
		lg.SetLevel(logrus.DebugLevel)
	}
	lg.ReplaceHooks(logrus.LevelHooks{})
	lg.AddHook(slogHook{l: l.With("component", "containerd")})
}

type slogHook struct{ l *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

// containerdNoise says whether a containerd message is noise on a healthy
// node, logged at debug whatever its level: the content store warns that
// it "failed check for fsverity support" on every open on filesystems
// without fs-verity (most: ext4 without the feature, overlay, tmpfs), and
// cradle does not use fs-verity; NRI says at every start, as an error, that
// it was built without WebAssembly plugins, which cradle is on purpose
// (the Makefile's nri_no_wasm; a .wasm plugin's launch still fails with an
// error of its own). containerd's messages are matched by text because
// they are known by nothing else.
func containerdNoise(msg string) bool {
	return msg == "failed check for fsverity support" ||
		msg == "failed to initialize WASM support: WASM support is disabled (at build time)"
}

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case containerdNoise(e.Message):
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	case e.Level == logrus.InfoLevel:
		level = slog.LevelInfo
	}
	attrs := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		attrs = append(attrs, k, v)
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	h.l.Log(ctx, level, e.Message, attrs...)
	return nil
}
