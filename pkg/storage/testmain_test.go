package storage

import (
	"os"

	"github.com/containerd/log"
)

// quietContainerdLogs keeps containerd's library logging (logrus) to errors
// during tests.
func quietContainerdLogs() { _ = log.SetLevel(os.Getenv("CD_LOG")) }
