package sandbox

import "testing"

func TestExpandSlice(t *testing.T) {
	for in, want := range map[string]string{
		"-.slice":                        "/",
		"kubepods.slice":                 "/kubepods.slice",
		"kubepods-burstable-pod12.slice": "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice",
		"kubepods-pod_a_b.slice":         "/kubepods.slice/kubepods-pod_a_b.slice",
	} {
		if got, err := expandSlice(in); err != nil || got != want {
			t.Errorf("expandSlice(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"kubepods", ".slice", "a--b.slice", "-a.slice", "a-.slice", "/a.slice"} {
		if got, err := expandSlice(bad); err == nil {
			t.Errorf("expandSlice(%q) = %q, want an error", bad, got)
		}
	}
}
