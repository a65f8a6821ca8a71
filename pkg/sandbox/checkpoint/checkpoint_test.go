package checkpoint

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
)

type pod struct {
	ID     string
	Labels map[string]string
	IPs    []string
}

func TestSaveLoadListDelete(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := pod{ID: "abc", Labels: map[string]string{"app": "x"}, IPs: []string{"10.88.0.2"}}
	if err := s.Save("pods", "abc", 3, want); err != nil {
		t.Fatal(err)
	}
	if err := s.Save("pods", "abd", 3, pod{ID: "abd"}); err != nil {
		t.Fatal(err)
	}
	var got pod
	v, err := s.Load("pods", "abc", &got)
	if err != nil || v != 3 {
		t.Fatalf("Load = %d, %v", v, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	// Overwrite keeps one file.
	want.IPs = nil
	if err := s.Save("pods", "abc", 4, want); err != nil {
		t.Fatal(err)
	}
	ids, err := s.List("pods")
	if err != nil || !cmp.Equal(ids, []string{"abc", "abd"}) {
		t.Errorf("List = %v, %v", ids, err)
	}
	if err := s.Delete("pods", "abc"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("pods", "abc"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := s.Load("pods", "abc", &got); !errdefs.IsNotFound(err) {
		t.Errorf("Load after Delete: %v", err)
	}
	if ids, _ := s.List("containers"); len(ids) != 0 {
		t.Errorf("empty kind lists %v", ids)
	}
}

func TestInterruptedWriteLeavesOldCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir)
	if err := s.Save("pods", "p1", 1, pod{ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	// A crash between temp write and rename leaves a temp file behind.
	tmp := filepath.Join(dir, "pods", ".tmp-p1.json-123")
	if err := os.WriteFile(tmp, []byte(`{"version":2,"da`), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := s.List("pods")
	if err != nil || !cmp.Equal(ids, []string{"p1"}) {
		t.Errorf("List = %v, %v", ids, err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Error("temp file of an interrupted write not cleaned")
	}
	var got pod
	if v, err := s.Load("pods", "p1", &got); err != nil || v != 1 || got.ID != "p1" {
		t.Errorf("Load = %d %+v %v", v, got, err)
	}
}

func TestBadNamesAndCorruption(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir)
	for _, id := range []string{"", "..", "a/b", "../x", "a b"} {
		if err := s.Save("pods", id, 1, pod{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Save(%q) = %v", id, err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "pods"), 0o700)
	os.WriteFile(filepath.Join(dir, "pods", "bad.json"), []byte("{not json"), 0o600)
	var got pod
	if _, err := s.Load("pods", "bad", &got); !errdefs.IsDataLoss(err) {
		t.Errorf("corrupt checkpoint: %v", err)
	}
}
