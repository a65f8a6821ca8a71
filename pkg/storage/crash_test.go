package storage

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
)

// A kill -9 inside the overlay snapshotter's Prepare, after it renamed
// new-N to the next ID but before its transaction committed, leaves a
// directory under that ID, which the next Prepare is handed again (issue 14,
// item 5: rename .../snapshots/new-N .../snapshots/7: file exists). The
// store removes such directories when it opens.
func TestPrepareAfterCrashLeftAnUncommittedSnapshotDir(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	ctx := s.nsCtx(context.Background())
	dir := filepath.Join(s.SnapshotRoot(), "snapshots")
	// A rootfs, kept by its label through the collection at the next Open
	// (which, when it removes something, cleans the directories as well).
	gcRoot := snapshots.WithLabels(map[string]string{labelGCRoot: time.Now().UTC().Format(time.RFC3339)})
	if _, err := s.sn.Prepare(ctx, "probe", "", gcRoot); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("snapshot dirs after one Prepare: %v, %v", ents, err)
	}
	id, err := strconv.Atoi(ents[0].Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What the crash left: the next ID renamed into place, and a temp
	// directory of another Prepare that had not got that far.
	for _, d := range []string{strconv.Itoa(id + 1), "new-" + strconv.FormatInt(time.Now().UnixNano(), 10)} {
		if err := os.MkdirAll(filepath.Join(dir, d, "fs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "fs", "half-unpacked"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	s = newStore(t, root)
	ctx = s.nsCtx(context.Background())
	if _, err := s.sn.Prepare(ctx, "after-crash", "", gcRoot); err != nil {
		t.Fatalf("Prepare after the crash: %v", err)
	}
	for _, k := range []string{"probe", "after-crash"} {
		if err := s.sn.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.collectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
}

// The same crash in the very first Prepare of a store, before the
// snapshotter's metadata had any bucket.
func TestPrepareAfterCrashInTheFirstPrepare(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "snapshots", "snapshots", "1", "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, root)
	ctx := s.nsCtx(context.Background())
	if _, err := s.sn.Prepare(ctx, "first", ""); err != nil {
		t.Fatalf("Prepare after the crash: %v", err)
	}
	if err := s.sn.Remove(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	if err := s.collectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
}
