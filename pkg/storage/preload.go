package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/pkg/atomicfile"
)

// preloadState records which bake-in archives were imported, so a start
// imports each archive once (and again only when the file changes).
type preloadState map[string]preloadMark

type preloadMark struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"modTime"` // unix nanoseconds
}

// Preload imports every *.tar archive in dir that has not been imported in
// its present form. Each archive is imported on its own (all-or-nothing);
// one that fails is reported and the rest still load, so a bad file in a
// node image never keeps the runtime down. A missing dir is not an error.
func (s *Store) Preload(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read preload directory: %w", err)
	}
	statePath := filepath.Join(s.opts.Root, "preloaded.json")
	state := preloadState{}
	if b, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(b, &state); err != nil {
			s.log.WarnContext(ctx, "ignoring unreadable preload state", "path", statePath, "error", err)
			state = preloadState{}
		}
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".tar") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mark := preloadMark{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
		if state[name] == mark {
			continue
		}
		imgs, err := s.Import(ctx, []string{p}, ImportOptions{})
		if err != nil {
			s.log.ErrorContext(ctx, "preload archive failed", "archive", p, "error", err)
			errs = append(errs, fmt.Errorf("preload %s: %w", p, err))
			continue
		}
		s.log.InfoContext(ctx, "preloaded archive", "archive", p, "images", len(imgs))
		state[name] = mark
	}
	b, err := json.Marshal(state)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(statePath, b); err != nil {
		errs = append(errs, fmt.Errorf("record preload state: %w", err))
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes temp → fsync → rename.
func writeFileAtomic(path string, b []byte) error {
	f, err := atomicfile.New(path, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Cancel()
		return err
	}
	return f.Close()
}
