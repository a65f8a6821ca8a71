//go:build !guest

package main

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The guest agent this daemon was built with (make build: cmd/shim with the
// "guest" tag, written to guestagent/cradle-agent before this build).
//
//go:embed guestagent
var guestAgentFS embed.FS

// guestAgentName is where make build writes the guest agent.
const guestAgentName = "guestagent/cradle-agent"

// writeGuestAgent writes the embedded guest agent to dir/cradle-agent
// (unless it is there already) and returns its path: the initramfs is
// built from it.
func writeGuestAgent(dir string) (string, error) {
	b, err := guestAgentFS.ReadFile(guestAgentName)
	if errors.Is(err, fs.ErrNotExist) {
		return "", errors.New("this cradle was built without its microVM guest agent (go build ./cmd/shim alone): build it with make build")
	}
	if err != nil {
		return "", fmt.Errorf("read the embedded guest agent: %w", err)
	}
	path := filepath.Join(dir, "cradle-agent")
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("guest agent: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".agent-*")
	if err != nil {
		return "", fmt.Errorf("guest agent: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("guest agent: %w", err)
	}
	return path, nil
}
