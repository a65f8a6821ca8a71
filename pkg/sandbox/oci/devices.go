package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Device describes a host device node.
type Device struct {
	// Type is "c" (character) or "b" (block).
	Type         string
	Major, Minor int64
	// Mode holds the node's permission bits.
	Mode     fs.FileMode
	UID, GID uint32
}

// DeviceLookup describes the device node at a host path (following
// symlinks). It is the only way Build learns about devices.
type DeviceLookup interface {
	DeviceInfo(hostPath string) (Device, error)
}

// devices adds the CRI devices and, for a privileged container, every host
// device, with the cgroup rules that let the container use them.
func (b *builder) devices(context.Context) error {
	res := b.spec.Linux.Resources
	if b.privileged() {
		res.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		for _, p := range b.opts.hostDevices {
			dev, err := b.lookupDevice(p)
			if err != nil {
				return err
			}
			b.spec.Linux.Devices = append(b.spec.Linux.Devices, linuxDevice(p, dev))
		}
	}
	for _, d := range b.in.Config.Devices {
		perms, err := devicePermissions(d.Permissions)
		if err != nil {
			return fmt.Errorf("device %q: %w", d.HostPath, err)
		}
		if !path.IsAbs(d.HostPath) || !path.IsAbs(d.ContainerPath) {
			return fmt.Errorf("device %q at %q: paths must be absolute: %w", d.HostPath, d.ContainerPath, errdefs.ErrInvalidArgument)
		}
		dev, err := b.lookupDevice(d.HostPath)
		if err != nil {
			return err
		}
		b.addDevice(linuxDevice(path.Clean(d.ContainerPath), dev))
		if !b.privileged() {
			major, minor := dev.Major, dev.Minor
			res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{
				Allow: true, Type: dev.Type, Major: &major, Minor: &minor, Access: perms,
			})
		}
	}
	return nil
}

func (b *builder) lookupDevice(hostPath string) (Device, error) {
	if b.opts.devices == nil {
		return Device{}, fmt.Errorf("device %q: no device lookup: %w", hostPath, errdefs.ErrFailedPrecondition)
	}
	dev, err := b.opts.devices.DeviceInfo(hostPath)
	if errors.Is(err, fs.ErrNotExist) {
		return Device{}, fmt.Errorf("device %q: %w: %w", hostPath, err, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return Device{}, fmt.Errorf("device %q: %w", hostPath, err)
	}
	if dev.Type != "c" && dev.Type != "b" {
		return Device{}, fmt.Errorf("%q is not a device node: %w", hostPath, errdefs.ErrInvalidArgument)
	}
	return dev, nil
}

// addDevice adds d, replacing a host device already at the same path.
func (b *builder) addDevice(d specs.LinuxDevice) {
	for i, old := range b.spec.Linux.Devices {
		if old.Path == d.Path {
			b.spec.Linux.Devices[i] = d
			return
		}
	}
	b.spec.Linux.Devices = append(b.spec.Linux.Devices, d)
}

func linuxDevice(containerPath string, d Device) specs.LinuxDevice {
	mode := d.Mode.Perm()
	uid, gid := d.UID, d.GID
	return specs.LinuxDevice{
		Path: containerPath, Type: d.Type, Major: d.Major, Minor: d.Minor,
		FileMode: &mode, UID: &uid, GID: &gid,
	}
}

// devicePermissions checks a cgroup access string: r, w and m, each at
// most once; empty means all three.
func devicePermissions(p string) (string, error) {
	if p == "" {
		return "rwm", nil
	}
	for i, c := range p {
		if !strings.ContainsRune("rwm", c) || strings.ContainsRune(p[i+1:], c) {
			return "", fmt.Errorf("device permissions %q: want a combination of r, w and m: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	return p, nil
}
