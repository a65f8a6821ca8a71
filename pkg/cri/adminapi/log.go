package adminapi

import "log/slog"

// LogValue implements slog.LogValuer: the image and user name, never the
// password. (The generated String prints every field: do not log a
// PullRequest with %v.)
func (r *PullRequest) LogValue() slog.Value {
	password := ""
	if r.GetPassword() != "" {
		password = "[redacted]"
	}
	return slog.GroupValue(
		slog.String("image", r.GetImage()),
		slog.String("username", r.GetUsername()),
		slog.String("password", password),
	)
}
