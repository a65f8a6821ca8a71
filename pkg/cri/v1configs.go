package cri

import (
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// V1Configs reads the CRI configs of the engine's version-1 checkpoints
// (sandbox.V1Configs): the CRI's messages as encoding/json wrote them,
// translated as the RPCs translate new ones.
type V1Configs struct{}

var _ sandbox.V1Configs = V1Configs{}

// PodConfig translates a version-1 pod's PodSandboxConfig.
func (V1Configs) PodConfig(raw json.RawMessage) (sandbox.PodConfig, error) {
	var c *runtime.PodSandboxConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return sandbox.PodConfig{}, fmt.Errorf("decode a version-1 pod config: %v: %w", err, errdefs.ErrDataLoss)
	}
	cfg, err := toPodConfig(c, "")
	if err != nil {
		return sandbox.PodConfig{}, fmt.Errorf("translate a version-1 pod config: %w", err)
	}
	return cfg, nil
}

// ContainerConfig translates a version-1 container's ContainerConfig.
func (V1Configs) ContainerConfig(raw json.RawMessage) (ctrconfig.Container, error) {
	var c *runtime.ContainerConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return ctrconfig.Container{}, fmt.Errorf("decode a version-1 container config: %v: %w", err, errdefs.ErrDataLoss)
	}
	if c == nil {
		return ctrconfig.Container{}, fmt.Errorf("a version-1 container without a config: %w", errdefs.ErrDataLoss)
	}
	cfg, err := toContainerConfig(c)
	if err != nil {
		return ctrconfig.Container{}, fmt.Errorf("translate a version-1 container config: %w", err)
	}
	return cfg, nil
}
