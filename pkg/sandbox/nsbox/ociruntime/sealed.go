package ociruntime

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// sealedSeals are the seals that runc's and crun's cloned_binary.c accept
// as "this binary is already a copy nothing can write": with them on
// /proc/self/exe they skip copying themselves.
const sealedSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// sealedExe runs the runtime binary from a sealed in-memory copy.
//
// runc and crun protect the host's binary from a container that would
// overwrite it through /proc/<pid>/exe (CVE-2019-5736): unless their
// executable is a sealed memfd, each invocation copies itself into one and
// executes that again. For crun that is a second exec and dynamic link on
// every call (a `crun --version` takes 9.6 ms from its file and 4.9 from a
// sealed copy on the development host); runc copies its whole binary for
// the init of every container (10 MiB; its copy measured no faster, so
// runc runs from its file). A sealed memfd cannot be written, which is
// what the copy is for, and runc's own comment allows an administrator to
// provide one; so the daemon makes it once and runs the runtime (directly
// and through conmon) from it.
//
// The runtime is started through a symbolic link, link, to
// /proc/<daemon pid>/fd/<memfd>: its process keeps the binary's name
// (comm) and conmon, in whatever mount namespace, reaches the copy as long
// as the daemon lives (conmon runs the runtime only while the daemon waits
// for it). A changed binary (an upgrade) is copied again before its next
// use. The copies are never closed: a command may have resolved the link
// to one and not yet started. Where no copy can be made the binary runs
// from its file, as before.
type sealedExe struct {
	src, link string
	log       *slog.Logger

	mu     sync.Mutex
	id     fileID     // the source's version last copied (or tried)
	tried  bool       // id is set
	ok     bool       // the copy of id succeeded
	copies []*os.File // every copy made, held open for the daemon's life
}

// fileID tells one version of a file from another.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func statID(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}, nil
}

func newSealedExe(src, linkDir string, log *slog.Logger) (*sealedExe, error) {
	if err := os.MkdirAll(linkDir, 0o700); err != nil {
		return nil, err
	}
	return &sealedExe{src: src, link: filepath.Join(linkDir, filepath.Base(src)), log: log}, nil
}

// path is what to execute for the runtime now: the link to a sealed copy
// of its current binary, or the binary's own path (file) when there is
// none or s is nil.
func (s *sealedExe) path(file string) string {
	if s == nil {
		return file
	}
	id, err := statID(s.src)
	if err != nil {
		return s.src // running it says what is wrong
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tried || id != s.id {
		s.id, s.tried = id, true
		err := s.copy(id)
		if err != nil {
			s.log.Warn("runtime binary runs from its file, not a sealed copy: it copies itself on each call", "binary", s.src, "error", err)
		}
		s.ok = err == nil
	}
	if s.ok {
		return s.link
	}
	return s.src // this version could not be copied: not tried again
}

// copy makes a sealed memfd holding the binary at version id and points
// the link at it.
func (s *sealedExe) copy(id fileID) error {
	in, err := os.Open(s.src)
	if err != nil {
		return err
	}
	defer in.Close()
	fd, err := unix.MemfdCreate(filepath.Base(s.src), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) { // a kernel before 6.3 knows no MFD_EXEC: every memfd may be executed
		fd, err = unix.MemfdCreate(filepath.Base(s.src), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+filepath.Base(s.src))
	keep := false
	defer func() {
		if !keep {
			_ = f.Close()
		}
	}()
	n, err := io.Copy(f, in)
	if err != nil {
		return fmt.Errorf("copy %s: %w", s.src, err)
	}
	if after, err := statID(s.src); err != nil || after != id || n != id.size {
		return fmt.Errorf("%s changed while it was copied", s.src)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, sealedSeals); err != nil {
		return fmt.Errorf("seal the copy: %w", err)
	}
	tmp := s.link + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	keep = true
	s.copies = append(s.copies, f)
	return nil
}
