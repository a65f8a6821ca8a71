package sandbox

import (
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// Checkpoint versions. Version 2 holds the engine's own types: a pod's
// PodConfig, a container's ctrconfig.Container. Version 1 held, besides,
// the CRI's own messages (PodConfig.Raw, a PodSandboxConfig, from which
// containers' specs were built; Container.Config, a ContainerConfig) as
// encoding/json wrote them: a daemon reads it through Options.V1Configs
// and writes version 2 from then on. A version this daemon does not know
// (one written by a newer cradle) is an unreadable checkpoint.
const (
	podCheckpointVersion       = 2
	containerCheckpointVersion = 2
)

// V1Configs decodes the CRI configs of version-1 checkpoints into the
// engine's types, by the translation the CRI edge gives new ones (pkg/cri
// implements it): the engine knows no CRI message.
type V1Configs interface {
	// PodConfig translates a PodSandboxConfig.
	PodConfig(raw json.RawMessage) (PodConfig, error)
	// ContainerConfig translates a ContainerConfig.
	ContainerConfig(raw json.RawMessage) (ctrconfig.Container, error)
}

// loadPod reads a pod's checkpoint, of any version this daemon knows.
func (m *Manager) loadPod(id string) (*Pod, error) {
	pod := &Pod{}
	if err := m.loadVersioned(podKind, id, podCheckpointVersion, pod, func(b []byte) error { return m.podFromV1(b, pod) }); err != nil {
		return nil, err
	}
	return pod, nil
}

// loadContainer reads a container's checkpoint, of any version this
// daemon knows.
func (m *Manager) loadContainer(id string) (*Container, error) {
	c := &Container{}
	if err := m.loadVersioned(containerKind, id, containerCheckpointVersion, c, func(b []byte) error { return m.containerFromV1(b, c) }); err != nil {
		return nil, err
	}
	return c, nil
}

// loadVersioned reads kind/id into v: decoded as it is at version newest,
// through fromV1 at version 1, refused at any other.
func (m *Manager) loadVersioned(kind, id string, newest int, v any, fromV1 func([]byte) error) error {
	version, data, err := m.ckpt.LoadRaw(kind, id)
	if err != nil {
		return err
	}
	switch version {
	case newest:
		if err = json.Unmarshal(data, v); err != nil {
			err = fmt.Errorf("%v: %w", err, errdefs.ErrDataLoss)
		}
	case 1:
		err = fromV1(data)
	default:
		err = unknownVersion(version, newest)
	}
	if err != nil {
		return fmt.Errorf("checkpoint %s/%s (version %d): %w", kind, id, version, err)
	}
	return nil
}

func unknownVersion(version, newest int) error {
	return fmt.Errorf("this daemon reads versions 1 to %d, not %d (written by a newer cradle?): %w", newest, version, errdefs.ErrNotImplemented)
}

// podFromV1 decodes a version-1 pod: its PodConfig as version 2 has it,
// but for what version 1 kept only in Raw.
func (m *Manager) podFromV1(data []byte, pod *Pod) error {
	var v1 struct {
		Pod
		Config struct {
			PodConfig
			Raw json.RawMessage
		}
	}
	if err := json.Unmarshal(data, &v1); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrDataLoss)
	}
	*pod = v1.Pod
	pod.Config = v1.Config.PodConfig
	if len(v1.Config.Raw) == 0 || string(v1.Config.Raw) == "null" {
		return nil // a pod the engine recorded without a config (a husk)
	}
	if m.opts.V1Configs == nil {
		return fmt.Errorf("no reader of version-1 configs: %w", errdefs.ErrNotImplemented)
	}
	raw, err := m.opts.V1Configs.PodConfig(v1.Config.Raw)
	if err != nil {
		return err
	}
	// Hostname and LogDirectory are the engine's choices when the config
	// named none: they stay as recorded.
	c := &pod.Config
	c.RequestedHostname, c.UserNSNode, c.Privileged = raw.RequestedHostname, raw.UserNSNode, raw.Privileged
	c.Resources, c.Overhead = raw.Resources, raw.Overhead
	return nil
}

// containerFromV1 decodes a version-1 container: its Config was the CRI's.
func (m *Manager) containerFromV1(data []byte, c *Container) error {
	var v1 struct {
		Container
		Config json.RawMessage
	}
	if err := json.Unmarshal(data, &v1); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrDataLoss)
	}
	*c = v1.Container
	if m.opts.V1Configs == nil {
		return fmt.Errorf("no reader of version-1 configs: %w", errdefs.ErrNotImplemented)
	}
	cfg, err := m.opts.V1Configs.ContainerConfig(v1.Config)
	if err != nil {
		return err
	}
	c.Config = cfg
	return nil
}
