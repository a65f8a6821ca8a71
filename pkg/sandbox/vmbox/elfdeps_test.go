package vmbox

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
)

func TestSharedLibsOfCrun(t *testing.T) {
	crun := testutil.RequireBinary(t, "crun")
	libs, err := sharedLibs(crun)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(libs))
	for i, l := range libs {
		names[i] = filepath.Base(l)
	}
	// Its own needs, one of theirs (libsystemd → liblz4), and the loader.
	for _, want := range []string{"libc.so.6", "libseccomp.so.2", "libyajl.so.2", "liblz4.so.1", "ld-linux-x86-64.so.2"} {
		if !slices.Contains(names, want) {
			t.Errorf("crun's libraries %v lack %s", names, want)
		}
	}
}
