package cri

import (
	"encoding/json"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The configs the version-1 fixtures hold, translated as the RPCs
// translate them, build the spec the version-1 engine built.
func TestV1ConfigsBuildTheSameSpec(t *testing.T) {
	_, podData := v1Checkpoint(t, "pods", v1PodID)
	var pod struct {
		sandbox.Pod
		Config struct {
			sandbox.PodConfig
			Raw *runtime.PodSandboxConfig
		}
	}
	if err := json.Unmarshal(podData, &pod); err != nil {
		t.Fatal(err)
	}
	_, ctrData := v1Checkpoint(t, "containers", v1ContainerID)
	var ctr struct {
		sandbox.Container
		Config *runtime.ContainerConfig
	}
	if err := json.Unmarshal(ctrData, &ctr); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v1PodSandboxConfig(), pod.Config.Raw, protocmp.Transform()); diff != "" {
		t.Fatalf("the fixture's pod config (-here +fixture):\n%s", diff)
	}
	if diff := cmp.Diff(v1ContainerConfig(), ctr.Config, protocmp.Transform()); diff != "" {
		t.Fatalf("the fixture's container config (-here +fixture):\n%s", diff)
	}
	podCfg, err := toPodConfig(pod.Config.Raw, pod.Config.Handler)
	if err != nil {
		t.Fatal(err)
	}
	podCfg.Hostname = pod.Config.Hostname
	pod.Pod.Config = podCfg
	if ctr.Container.Config, err = toContainerConfig(ctr.Config); err != nil {
		t.Fatal(err)
	}
	assertV1Spec(t, pod.Pod, ctr.Container)
}
