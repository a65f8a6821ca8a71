// Package osthread runs work on an OS thread of its own that is thrown
// away afterwards, so that a namespace the work enters or makes there
// never reaches another goroutine.
//
// That thread is never the process's main thread. Go does not end the
// main thread when the goroutine locked to it exits: it parks it for
// good. Namespaces changed there would stay changed, /proc/self/ns would
// show them (the main thread's view) in place of the host's, and a pod's
// namespace held by that thread would outlive the pod.
package osthread

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Run calls fn on a locked OS thread other than the main thread, which
// exits once fn returns, and returns fn's error.
func Run(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Holding the main thread, hand the work to a goroutine that
			// cannot run here; the main thread is then released.
			errc <- Run(fn)
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: the thread dies with this goroutine.
		errc <- fn()
	}()
	return <-errc
}
