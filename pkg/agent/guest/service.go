package guest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// Service implements api.AgentService inside the guest.
type Service struct {
	Version string
	Log     *slog.Logger
	// PowerOff stops the VM; it is called after Shutdown's reply had a
	// moment to leave. Run passes a sync+reboot(POWER_OFF); tests a fake.
	PowerOff func()
	// Runtime runs the pod's containers; nil answers their calls with
	// FailedPrecondition.
	Runtime *Runtime
}

var _ api.AgentService = (*Service)(nil)

// Health reports the guest kernel and its uptime.
func (s *Service) Health(context.Context, *api.HealthRequest) (*api.HealthResponse, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return nil, fmt.Errorf("clock_gettime: %w", err)
	}
	return &api.HealthResponse{
		KernelRelease: unix.ByteSliceToString(u.Release[:]),
		KernelVersion: unix.ByteSliceToString(u.Version[:]),
		UptimeNs:      ts.Nano(),
		AgentVersion:  s.Version,
		Protocol:      api.Protocol,
	}, nil
}

// shutdownReplyGrace lets Shutdown's reply reach the host before the VM
// stops; the host does not depend on it (it waits for QEMU to exit).
const shutdownReplyGrace = 50 * time.Millisecond

// Shutdown syncs filesystems now and powers off just after replying.
func (s *Service) Shutdown(context.Context, *api.ShutdownRequest) (*api.ShutdownResponse, error) {
	s.Log.Info("shutdown requested")
	unix.Sync()
	time.AfterFunc(shutdownReplyGrace, s.PowerOff)
	return &api.ShutdownResponse{}, nil
}
