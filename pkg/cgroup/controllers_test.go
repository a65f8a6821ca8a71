package cgroup

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHugePageSizes(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB", "other", "hugepages-xkB"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := hugePageSizes(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"1GB", "2MB", "64KB"}, got); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	if got, err := hugePageSizes(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Errorf("no hugepages dir: %v, %v", got, err)
	}
}

// TestControllers reads this host's layout: on a v1 or hybrid host the v1
// hierarchies mounted, on v2 the root's delegated controllers.
func TestControllers(t *testing.T) {
	m, err := New()
	if err != nil {
		t.Skip(err)
	}
	got, err := m.Controllers("/cradle-test-none/pod")
	if err != nil {
		t.Fatal(err)
	}
	if !got["memory"] || !got["cpu"] {
		t.Errorf("controllers = %v, want memory and cpu among them", got)
	}
	if m.Layout() == LayoutHybrid {
		if _, err := os.Stat("/sys/fs/cgroup/hugetlb"); os.IsNotExist(err) && got["hugetlb"] {
			t.Errorf("hugetlb reported without a v1 hugetlb hierarchy: %v", got)
		}
	}
}
