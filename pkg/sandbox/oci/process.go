package oci

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// defaultPathEnv is PATH when neither the image nor the container sets one.
const defaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// process sets the command, environment, working directory and terminal.
func (b *builder) process(context.Context) error {
	args, err := processArgs(b.in.Config, b.in.Image)
	if err != nil {
		return err
	}
	cwd, err := workingDir(b.in.Config.WorkingDir, b.in.Image.WorkingDir)
	if err != nil {
		return err
	}
	p := b.spec.Process
	p.Args = args
	p.Cwd = cwd
	p.Env = processEnv(b.in.Image.Env, b.in.Config.Env, b.in.Pod.Hostname)
	p.Terminal = b.in.Config.TTY
	p.NoNewPrivileges = b.security().NoNewPrivs
	return nil
}

// processArgs merges the container's command and args with the image's as
// kubelet documents it: a command replaces the entrypoint and drops the
// image's cmd; args replace the image's cmd.
func processArgs(c ctrconfig.Container, img ocispec.ImageConfig) ([]string, error) {
	command, args := c.Command, c.Args
	if len(command) == 0 {
		command = img.Entrypoint
		if len(args) == 0 {
			args = img.Cmd
		}
	}
	out := slices.Concat(command, args)
	if len(out) == 0 {
		return nil, fmt.Errorf("no command given and the image has no entrypoint or cmd: %w", errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// workingDir is the container's working directory, else the image's, else
// "/". It must be absolute and free of ".." elements.
func workingDir(fromConfig, fromImage string) (string, error) {
	dir := fromConfig
	if dir == "" {
		dir = fromImage
	}
	if dir == "" {
		return "/", nil
	}
	if !path.IsAbs(dir) {
		return "", fmt.Errorf("working directory %q is not absolute: %w", dir, errdefs.ErrInvalidArgument)
	}
	if slices.Contains(strings.Split(dir, "/"), "..") {
		return "", fmt.Errorf("working directory %q escapes the root: %w", dir, errdefs.ErrInvalidArgument)
	}
	return path.Clean(dir), nil
}

// processEnv is PATH, HOSTNAME, the image's env and then the container's;
// a later value replaces an earlier one with the same key, in place.
func processEnv(image []string, envs []ctrconfig.EnvVar, hostname string) []string {
	var env envList
	env.set(defaultPathEnv)
	if hostname != "" {
		env.set("HOSTNAME=" + hostname)
	}
	for _, kv := range image {
		env.set(kv)
	}
	for _, kv := range envs {
		env.set(kv.Key + "=" + kv.Value)
	}
	return env.list
}

type envList struct {
	list  []string
	index map[string]int
}

func (e *envList) set(kv string) {
	key, _, _ := strings.Cut(kv, "=")
	if e.index == nil {
		e.index = make(map[string]int)
	}
	if i, ok := e.index[key]; ok {
		e.list[i] = kv
		return
	}
	e.index[key] = len(e.list)
	e.list = append(e.list, kv)
}
