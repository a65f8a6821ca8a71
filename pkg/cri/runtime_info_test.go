package cri

import (
	"testing"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The default handler is listed under the empty name too, with its
// features: kubelet and critest look pods without a RuntimeClass up by it.
func TestRuntimeHandlersListTheDefaultUnderTheEmptyName(t *testing.T) {
	handlers := []sandbox.Handler{
		{Name: "crun", Features: sandbox.HandlerFeatures{RecursiveReadOnlyMounts: true}},
		{Name: "runc", Features: sandbox.HandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}},
	}
	runcFeatures := &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}
	want := []*runtime.RuntimeHandler{
		{Name: "", Features: runcFeatures},
		{Name: "crun", Features: &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true}},
		{Name: "runc", Features: runcFeatures},
	}
	if diff := cmp.Diff(want, runtimeHandlers(handlers, "runc"), protocmp.Transform()); diff != "" {
		t.Errorf("handlers (-want +got):\n%s", diff)
	}
	if got := runtimeHandlers(handlers, "kata"); len(got) != 2 {
		t.Errorf("an unknown default adds no entry: %v", got)
	}
}
