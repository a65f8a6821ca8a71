// Package checkpoint persists the engine's objects (pods, containers) as
// versioned JSON files, one per object, so that a daemon restart or crash
// loses nothing: each write goes to a temporary file, is fsynced, renamed
// over the old one, and the directory is fsynced, so a reader sees the old
// or the new checkpoint, never a torn one.
//
// Layout: <dir>/<kind>/<id>.json, holding {"version": N, "data": …}.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
)

// Store reads and writes checkpoints under one directory.
type Store struct {
	dir string
}

// envelope is the on-disk form.
type envelope struct {
	Version int             `json:"version"`
	Data    json.RawMessage `json:"data"`
}

// New opens (creating) a checkpoint directory.
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create checkpoint directory: %w", err)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(kind, id string) (string, error) {
	if !validName(kind) || !validName(id) {
		return "", fmt.Errorf("checkpoint %q/%q: invalid name: %w", kind, id, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(s.dir, kind, id+".json"), nil
}

const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."

// validName admits what IDs and kinds are made of, never a path.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	return strings.Trim(s, nameChars) == "" && s != "." && s != ".."
}

// Save writes v as the checkpoint of kind/id at version.
func (s *Store) Save(kind, id string, version int, v any) error {
	p, err := s.path(kind, id)
	if err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode checkpoint %s/%s: %w", kind, id, err)
	}
	b, err := json.Marshal(envelope{Version: version, Data: data})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return writeAtomic(p, b)
}

// Load reads kind/id into v and returns the version it was written at.
// A missing checkpoint is NotFound.
func (s *Store) Load(kind, id string, v any) (int, error) {
	version, data, err := s.LoadRaw(kind, id)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return 0, fmt.Errorf("checkpoint %s/%s (version %d): %v: %w", kind, id, version, err, errdefs.ErrDataLoss)
	}
	return version, nil
}

// LoadRaw reads a checkpoint's version and its undecoded data, for a
// caller whose decoding depends on the version.
func (s *Store) LoadRaw(kind, id string) (int, json.RawMessage, error) {
	p, err := s.path(kind, id)
	if err != nil {
		return 0, nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, fmt.Errorf("checkpoint %s/%s: %w", kind, id, errdefs.ErrNotFound)
	}
	if err != nil {
		return 0, nil, err
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return 0, nil, fmt.Errorf("checkpoint %s/%s is corrupt: %v: %w", kind, id, err, errdefs.ErrDataLoss)
	}
	return env.Version, env.Data, nil
}

// Delete removes kind/id; a missing checkpoint is not an error.
func (s *Store) Delete(kind, id string) error {
	p, err := s.path(kind, id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// List returns the IDs of kind's checkpoints, sorted. Leftover temporary
// files of interrupted writes are removed.
func (s *Store) List(kind string) ([]string, error) {
	if !validName(kind) {
		return nil, fmt.Errorf("checkpoint kind %q: %w", kind, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Join(s.dir, kind)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		if id, ok := strings.CutSuffix(name, ".json"); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// writeAtomic writes b to path: temp file → fsync → rename → fsync dir.
func writeAtomic(path string, b []byte) (retErr error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}
