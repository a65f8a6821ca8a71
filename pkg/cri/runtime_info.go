package cri

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/pelletier/go-toml/v2"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// runtimeName is what Version reports.
	runtimeName = "cradle"
	// kubeAPIVersion is the CRI version string kubelet checks.
	kubeAPIVersion = "0.1.0"
	// runtimeAPIVersion is the CRI API this server speaks.
	runtimeAPIVersion = "v1"
)

// Condition reasons reported by Status.
const ()

func (s *runtimeServer) Version(ctx context.Context, _ *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    s.deps.Version.Version,
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}

// Status reports honest conditions: RuntimeReady while the default
// handler can run containers (its OCI runtime and monitor were found),
// NetworkReady while the pod network is usable (bridge up and rules in
// place, or a valid CNI configuration). The handlers are listed with the
// features their binaries report.
func (s *runtimeServer) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	netOK, netReason, netMessage := s.deps.Network.Ready(ctx)
	rtOK, rtReason, rtMessage := true, "", ""
	if s.deps.RuntimeReady != nil {
		rtOK, rtReason, rtMessage = s.deps.RuntimeReady()
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{
			{
				Type:    runtime.RuntimeReady,
				Status:  rtOK,
				Reason:  rtReason,
				Message: rtMessage,
			},
			{
				Type:    runtime.NetworkReady,
				Status:  netOK,
				Reason:  netReason,
				Message: netMessage,
			},
		}},
		// Both supplemental-groups policies are applied; a volume's noexec,
		// nodev, nosuid (and atime) options reach its bind mount. Host network
		// with a user namespace is not offered: untested with runc and crun.
		Features: &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true, MountOptions: true},
	}
	resp.RuntimeHandlers = runtimeHandlers(s.deps.Handlers, s.deps.Config.Runtime.DefaultHandler)
	if req.GetVerbose() {
		info, err := s.verboseInfo()
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

// runtimeHandlers lists the handlers with their features, the default one
// first under the empty name too: kubelet and critest look a pod without
// a RuntimeClass up by that name (recursive read-only mounts and user
// namespaces are refused for a handler they cannot find).
func runtimeHandlers(handlers []sandbox.Handler, defaultName string) []*runtime.RuntimeHandler {
	out := make([]*runtime.RuntimeHandler, 0, len(handlers)+1)
	for _, h := range handlers {
		rh := &runtime.RuntimeHandler{
			Name: h.Name,
			Features: &runtime.RuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: h.Features.RecursiveReadOnlyMounts,
				UserNamespaces:          h.Features.UserNamespaces,
			},
		}
		if h.Name == defaultName {
			out = append([]*runtime.RuntimeHandler{{Name: "", Features: rh.Features}}, out...)
		}
		out = append(out, rh)
	}
	return out
}

// verboseInfo is what `crictl info` shows beyond the conditions: the
// configuration in force and each handler's probe result, as JSON objects
// (crictl renders values that start with "{" as objects).
func (s *runtimeServer) verboseInfo() (map[string]string, error) {
	cfg, err := configJSON(s.deps.Config)
	if err != nil {
		return nil, err
	}
	type handlerInfo struct {
		Kind                    string `json:"kind"`
		Binary                  string `json:"binary,omitempty"`
		Version                 string `json:"version,omitempty"`
		Problem                 string `json:"problem,omitempty"`
		Accel                   string `json:"accel,omitempty"`
		RecursiveReadOnlyMounts bool   `json:"recursiveReadOnlyMounts"`
		UserNamespaces          bool   `json:"userNamespaces"`
	}
	hs := make(map[string]handlerInfo, len(s.deps.Handlers))
	for _, h := range s.deps.Handlers {
		hs[h.Name] = handlerInfo{h.Kind, h.Binary, h.Version, h.Problem, h.Accel,
			h.Features.RecursiveReadOnlyMounts, h.Features.UserNamespaces}
	}
	handlers, err := json.Marshal(hs)
	if err != nil {
		return nil, err
	}
	mode, why := s.deps.Network.Mode()
	return map[string]string{
		"config":       string(cfg),
		"handlers":     string(handlers),
		"networkMode":  mode + " (" + why + ")",
		"cgroupDriver": s.deps.CgroupDriver,
		"version":      s.deps.Version.Version,
		"commit":       s.deps.Version.Commit,
	}, nil
}

// configJSON renders the configuration as a JSON object with the same keys
// as the TOML file.
func configJSON(c config.Config) ([]byte, error) {
	b, err := config.Marshal(c)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := toml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("re-read config: %w", err)
	}
	return json.Marshal(m)
}

// UpdateRuntimeConfig takes kubelet's pod CIDR for the built-in network.
func (s *runtimeServer) UpdateRuntimeConfig(ctx context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		if err := s.deps.Network.SetPodSubnets(ctx, cidr); err != nil {
			return nil, err
		}
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}

func (s *runtimeServer) RuntimeConfig(ctx context.Context, _ *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	driver := runtime.CgroupDriver_CGROUPFS
	if s.deps.CgroupDriver == config.CgroupDriverSystemd {
		driver = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}
