package adminapi

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestPullRequestLogValueRedactsPassword(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *PullRequest
		want string
	}{
		{"credential", &PullRequest{Image: "r/a:1", Username: "u", Password: "hunter2"},
			`req.image=r/a:1 req.username=u req.password=[redacted]`},
		{"anonymous", &PullRequest{Image: "r/a:1"}, `req.image=r/a:1 req.username="" req.password=""`},
		{"nil", nil, `req.image="" req.username="" req.password=""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey {
						return slog.Attr{}
					}
					return a
				},
			}))
			log.Info("pull", "req", tc.req)
			if got := strings.TrimSpace(buf.String()); got != tc.want {
				t.Errorf("logged %s, want %s", got, tc.want)
			}
			if strings.Contains(buf.String(), "hunter2") {
				t.Errorf("the password was logged: %s", buf.String())
			}
		})
	}
}
