package storage

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	hostcfg "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
)

// Auth is the registry credential a pull request carries (CRI AuthConfig).
// It never reaches a log: it prints as "[redacted]".
type Auth struct {
	Username      string
	Password      string
	Auth          string // base64 of "username:password"
	ServerAddress string // when set, the credential is used for this registry only
	IdentityToken string
	RegistryToken string
}

// LogValue implements slog.LogValuer.
func (a *Auth) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String implements fmt.Stringer so %v never prints a secret.
func (a *Auth) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer for %#v.
func (a *Auth) GoString() string { return "[redacted]" }

// appliesTo reports whether the credential is for host.
func (a *Auth) appliesTo(host string) bool {
	if a.ServerAddress == "" {
		return true
	}
	return canonicalHost(a.ServerAddress) == canonicalHost(host)
}

// credentials is a docker.AuthorizerOpt credential callback.
func (a *Auth) credentials(host string) (string, string, error) {
	if !a.appliesTo(host) {
		return "", "", nil
	}
	if a.IdentityToken != "" {
		return "", a.IdentityToken, nil
	}
	if a.Username != "" || a.Password != "" {
		return a.Username, a.Password, nil
	}
	if a.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("auth field is not base64: %w", errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(b), ":")
		if !ok {
			return "", "", fmt.Errorf("auth field is not user:password: %w", errdefs.ErrInvalidArgument)
		}
		return user, pass, nil
	}
	return "", "", nil
}

// canonicalHost reduces a server address ("https://index.docker.io/v1/",
// "registry:5000") to a host, with Docker Hub's aliases folded together.
func canonicalHost(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		s = u.Host
	}
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return s
}

// resolver builds a resolver for one pull: hosts from the certs.d directory
// (mirrors, plain HTTP, TLS), the request's credential, and transports that
// meter the pull and bound how long a registry may take to answer.
func (s *Store) resolver(ctx context.Context, auth *Auth, tr *transfer) remotes.Resolver {
	opts := hostcfg.HostOptions{
		HostDir:      hostcfg.HostDirFromRoot(s.opts.RegistryConfigDir),
		UpdateClient: s.updateClient(tr),
	}
	if auth != nil {
		opts.Credentials = auth.credentials
		if auth.RegistryToken != "" {
			opts.AuthorizerOpts = append(opts.AuthorizerOpts, docker.WithAuthHeader(http.Header{
				"Authorization": []string{"Bearer " + auth.RegistryToken},
			}))
		}
	}
	return docker.NewResolver(docker.ResolverOptions{Hosts: hostcfg.ConfigureHosts(ctx, opts)})
}

// updateClient sets cradle's timeouts on a registry client's transport and
// meters it. containerd calls it first on the default client, then on copies
// for hosts with their own TLS or dial settings (their transports are clones
// of the default one, so they inherit its dialer unless hosts.toml set a
// dial_timeout); it is idempotent.
func (s *Store) updateClient(tr *transfer) hostcfg.UpdateClientFunc {
	first := true
	return func(c *http.Client) error {
		if _, done := c.Transport.(*meteredTransport); done {
			return nil
		}
		if t, ok := c.Transport.(*http.Transport); ok {
			t.ResponseHeaderTimeout = s.opts.ResponseHeaderTimeout
			t.TLSHandshakeTimeout = s.opts.DialTimeout
			if first {
				t.DialContext = (&net.Dialer{Timeout: s.opts.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
			}
		}
		first = false
		c.Transport = &meteredTransport{base: c.Transport, t: tr}
		return nil
	}
}

// meteredTransport records bytes received and time spent waiting on the
// registry, and marks progress for the pull's stall watchdog.
type meteredTransport struct {
	base http.RoundTripper
	t    *transfer
}

func (m *meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	m.t.touch()
	resp, err := m.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	m.t.touch()
	resp.Body = &meteredBody{ReadCloser: resp.Body, t: m.t}
	return resp, nil
}

type meteredBody struct {
	io.ReadCloser
	t *transfer
}

func (b *meteredBody) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := b.ReadCloser.Read(p)
	b.t.stats.fetchNanos.Add(int64(time.Since(start)))
	if n > 0 {
		b.t.stats.bytes.Add(int64(n))
		b.t.touch()
	}
	return n, err
}
