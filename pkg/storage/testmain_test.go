package storage

import (
	"os"

	"github.com/containerd/log"
)

// quietContainerdLogs keeps containerd's library logging (logrus) to errors
// during tests; CD_LOG=debug (or another level) shows more.
func quietContainerdLogs() {
	level := os.Getenv("CD_LOG")
	if level == "" {
		level = "error"
	}
	_ = log.SetLevel(level)
}
