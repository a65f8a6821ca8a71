// Command benchcompare measures cradle against containerd (CRI plugin,
// containerd-shim-runc-v2) over their CRI sockets with one client: the
// same busybox image from a registry on loopback, the same runc, one
// daemon at a time, alternating which goes first each round. It prints
// per-RPC p50/p90 of N pods started and removed one after another and by 5
// concurrent clients, the host memory (PSS) of the processes each runtime
// adds per pod, and the daemon's RSS idle, with the pods up and after
// they are gone: the median of the rounds, with cradle/containerd ratios.
//
// It is a developer's tool (`make bench-compare`), not a test: it needs
// root, conmon, runc and a containerd built by the make target, and runs
// for minutes. Numbers are figures, never pass/fail.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.IntVar(&o.pods, "n", 20, "pods per phase (one after another, then by 5 concurrent clients)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds (each starts fresh daemons); the table shows the median")
	flag.IntVar(&o.parallel, "parallel", 5, "concurrent clients in the concurrent phase")
	flag.StringVar(&o.cradle, "cradle", "bin/cradle", "the cradle binary")
	flag.StringVar(&o.containerd, "containerd", "_output/tools/containerd-v2.4.2/containerd", "the containerd binary (containerd-shim-runc-v2 beside it)")
	flag.StringVar(&o.runc, "runc", "/usr/bin/runc", "the runc both runtimes run")
	flag.StringVar(&o.cradleOCI, "cradle-oci", "", "the OCI runtime cradle's one handler runs (e.g. /usr/bin/runc; default: cradle's built-in handlers and default handler, auto: crun where installed), containerd keeping -runc")
	flag.StringVar(&o.work, "work", "", "scratch directory (default: a fresh one under /tmp, removed at the end)")
	flag.StringVar(&o.kit, "kit", "/work/shared/conformance", "conformance kit, for helpers/pause.c (containerd's pause image)")
	flag.StringVar(&o.only, "only", "", "run one runtime only: cradle or containerd")
	flag.StringVar(&o.cradleDebug, "cradle-debug", "", "cradle's [debug] address (pprof on loopback), e.g. 127.0.0.1:6060")
	flag.StringVar(&o.idleHook, "idle-hook", "", "a shell command run when the daemon's idle RSS is taken, with PID and RUNTIME in its environment (e.g. to copy /proc/$PID/smaps)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory and the daemons' logs")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if os.Geteuid() != 0 {
		log.Fatal("benchcompare needs root")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	pods, rounds, parallel              int
	cradle, containerd, runc, work, kit string
	only, cradleDebug, cradleOCI        string
	idleHook                            string
	keep                                bool
}

func run(ctx context.Context, o options) error {
	var err error
	for _, p := range []*string{&o.cradle, &o.containerd, &o.runc, &o.cradleOCI} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "cradle-benchcompare-"); err != nil {
			return err
		}
	}
	if !o.keep {
		defer os.RemoveAll(o.work)
	}
	defer removeCgroups(newCgroupTops())
	reg, err := startRegistry(o.work, o.kit)
	if err != nil {
		return err
	}
	defer reg.close()
	runtimes := []string{"cradle", "containerd"}
	if o.only != "" {
		runtimes = []string{o.only}
	}
	results := map[string][]figures{}
	for round := range o.rounds {
		order := runtimes
		if round%2 == 1 && len(runtimes) == 2 {
			order = []string{runtimes[1], runtimes[0]}
		}
		for _, rt := range order {
			log.Printf("round %d/%d: %s, %d pods", round+1, o.rounds, rt, o.pods)
			start := time.Now()
			f, err := measure(ctx, o, reg, rt, round)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, rt, err)
			}
			log.Printf("round %d/%d: %s done in %s", round+1, o.rounds, rt, time.Since(start).Round(time.Second))
			results[rt] = append(results[rt], f)
		}
	}
	printTable(os.Stdout, o, runtimes, results)
	return nil
}
