package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// maxLineBytes bounds one line of /etc/passwd or /etc/group (a group with
// thousands of members is still far below it).
const maxLineBytes = 1 << 20

// The image's /etc/passwd and /etc/group are parsed here rather than with
// moby/sys/user, which takes a uid or gid that does not parse as 0: a
// malformed line would name root (TestResolveUser, "broken").

// passwdEntry is one line of /etc/passwd.
type passwdEntry struct {
	name string
	uid  uint32
	gid  uint32
}

// groupEntry is one line of /etc/group.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// userDB is what the image's /etc/passwd and /etc/group say.
type userDB struct {
	users  []passwdEntry
	groups []groupEntry
}

// loadUserDB reads /etc/passwd and /etc/group from the image. Missing files
// give an empty database: numeric users still resolve.
func loadUserDB(fsys fs.FS) (userDB, error) {
	var db userDB
	if fsys == nil {
		return db, nil
	}
	err := readColonFile(fsys, "etc/passwd", 4, func(f []string) {
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 == nil && err2 == nil {
			db.users = append(db.users, passwdEntry{name: f[0], uid: uid, gid: gid})
		}
	})
	if err != nil {
		return db, err
	}
	err = readColonFile(fsys, "etc/group", 3, func(f []string) {
		gid, err := parseID(f[2])
		if err != nil {
			return
		}
		g := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			g.members = strings.Split(f[3], ",")
		}
		db.groups = append(db.groups, g)
	})
	return db, err
}

// readColonFile calls fn with the fields of each line that has at least
// min of them, skipping comments and blank lines.
func readColonFile(fsys fs.FS, name string, minFields int, fn func([]string)) error {
	f, err := fsys.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open image /%s: %w", name, err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, maxLineBytes)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if fields := strings.Split(line, ":"); len(fields) >= minFields {
			fn(fields)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read image /%s: %w", name, err)
	}
	return nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

func (db userDB) userByName(name string) (passwdEntry, bool) {
	i := slices.IndexFunc(db.users, func(u passwdEntry) bool { return u.name == name })
	if i < 0 {
		return passwdEntry{}, false
	}
	return db.users[i], true
}

func (db userDB) userByID(uid uint32) (passwdEntry, bool) {
	i := slices.IndexFunc(db.users, func(u passwdEntry) bool { return u.uid == uid })
	if i < 0 {
		return passwdEntry{}, false
	}
	return db.users[i], true
}

// groupID resolves a numeric group or a group name.
func (db userDB) groupID(group string) (uint32, error) {
	if gid, err := parseID(group); err == nil {
		return gid, nil
	}
	i := slices.IndexFunc(db.groups, func(g groupEntry) bool { return g.name == group })
	if i < 0 {
		return 0, fmt.Errorf("group %q is not in the image's /etc/group: %w", group, errdefs.ErrInvalidArgument)
	}
	return db.groups[i].gid, nil
}

// memberOf lists the groups that name the user as a member.
func (db userDB) memberOf(user string) []uint32 {
	var gids []uint32
	for _, g := range db.groups {
		if user != "" && slices.Contains(g.members, user) {
			gids = append(gids, g.gid)
		}
	}
	return gids
}

// identity is who the container's process runs as.
type identity struct {
	uid, gid  uint32
	name      string // empty when the uid has no passwd entry
	extraGids []uint32
}

// resolveUser finds the uid, primary gid and image group memberships for
// the security context over the image's User ("uid", "name",
// "uid:gid", "name:group").
func resolveUser(db userDB, sc ctrconfig.Security, imageUser string) (identity, error) {
	if sc.RunAsGroup != nil && sc.RunAsUser == nil && sc.RunAsUsername == "" {
		return identity{}, fmt.Errorf("run_as_group needs run_as_user or run_as_username: %w", errdefs.ErrInvalidArgument)
	}
	user, group := "0", ""
	switch {
	case sc.RunAsUsername != "":
		user = sc.RunAsUsername
	case sc.RunAsUser != nil:
		user = strconv.FormatInt(*sc.RunAsUser, 10)
	case imageUser != "":
		user, group, _ = strings.Cut(imageUser, ":")
	}
	id, err := lookupUser(db, user)
	if err != nil {
		return identity{}, err
	}
	switch {
	case sc.RunAsGroup != nil:
		gid := *sc.RunAsGroup
		if gid < 0 || gid > int64(^uint32(0)) {
			return identity{}, fmt.Errorf("run_as_group %d is out of range: %w", gid, errdefs.ErrInvalidArgument)
		}
		id.gid = uint32(gid)
	case group != "":
		if id.gid, err = db.groupID(group); err != nil {
			return identity{}, err
		}
	}
	id.extraGids = db.memberOf(id.name)
	return id, nil
}

func lookupUser(db userDB, user string) (identity, error) {
	if uid, err := parseID(user); err == nil {
		pw, ok := db.userByID(uid)
		if !ok {
			return identity{uid: uid}, nil
		}
		return identity{uid: uid, gid: pw.gid, name: pw.name}, nil
	}
	if strings.HasPrefix(user, "-") {
		return identity{}, fmt.Errorf("user %q is out of range: %w", user, errdefs.ErrInvalidArgument)
	}
	pw, ok := db.userByName(user)
	if !ok {
		return identity{}, fmt.Errorf("user %q is not in the image's /etc/passwd: %w", user, errdefs.ErrInvalidArgument)
	}
	return identity{uid: pw.uid, gid: pw.gid, name: pw.name}, nil
}

// supplementalGroups lists the process's groups, primary first, then the
// image's memberships (Merge only), then the requested ones, each once.
func supplementalGroups(id identity, sc ctrconfig.Security) ([]uint32, error) {
	gids := []uint32{id.gid}
	switch p := sc.SupplementalGroupsPolicy; p {
	case ctrconfig.GroupsMerge:
		gids = append(gids, id.extraGids...)
	case ctrconfig.GroupsStrict:
	default:
		return nil, fmt.Errorf("supplemental groups policy %v: %w", p, errdefs.ErrInvalidArgument)
	}
	for _, g := range sc.SupplementalGroups {
		if g < 0 || g > int64(^uint32(0)) {
			return nil, fmt.Errorf("supplemental group %d is out of range: %w", g, errdefs.ErrInvalidArgument)
		}
		gids = append(gids, uint32(g))
	}
	return dedupe(gids), nil
}

func dedupe[T comparable](in []T) []T {
	seen := make(map[T]bool, len(in))
	out := in[:0:0]
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// user sets the process's uid, gid and supplementary groups.
func (b *builder) user(context.Context) error {
	db, err := loadUserDB(b.opts.imageFS)
	if err != nil {
		return err
	}
	sc := *b.security()
	id, err := resolveUser(db, sc, b.in.Image.User)
	if err != nil {
		return err
	}
	gids, err := supplementalGroups(id, sc)
	if err != nil {
		return err
	}
	b.spec.Process.User.UID = id.uid
	b.spec.Process.User.GID = id.gid
	b.spec.Process.User.AdditionalGids = gids
	return nil
}
