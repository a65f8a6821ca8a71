package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// printTable writes the median over rounds of every figure, per runtime,
// and cradle/containerd.
func printTable(w io.Writer, o options, runtimes []string, results map[string][]figures) {
	var rows []string
	for _, phase := range []string{"seq", fmt.Sprintf("%d conc", o.parallel)} {
		for _, rpc := range rpcs {
			rows = append(rows, fmt.Sprintf("%s %s p50", phase, rpc), fmt.Sprintf("%s %s p90", phase, rpc))
		}
	}
	rows = append(rows, "host PSS per pod (MiB)", "processes per pod", "daemon RSS idle (MiB)",
		fmt.Sprintf("daemon RSS, %d pods (MiB)", o.pods), "daemon RSS after (MiB)")
	fmt.Fprintf(w, "\n%d pods, median of %d rounds; times in ms (seq: one after another; %d conc: %d clients at once)\n",
		o.pods, o.rounds, o.parallel, o.parallel)
	cradleRuntime := o.cradleOCI
	if cradleRuntime == "" {
		cradleRuntime = "its default handler (auto: crun where installed)"
	}
	fmt.Fprintf(w, "cradle runs %s; containerd runs %s\n", cradleRuntime, o.runc)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\t%s\t", "", strings.Join(runtimes, "\t"))
	if len(runtimes) == 2 {
		fmt.Fprint(tw, "ratio\t")
	}
	fmt.Fprintln(tw)
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t", row)
		var vals []float64
		for _, rt := range runtimes {
			v := median(results[rt], row)
			vals = append(vals, v)
			fmt.Fprintf(tw, "%.2f\t", v)
		}
		if len(vals) == 2 {
			if vals[1] != 0 {
				fmt.Fprintf(tw, "%.2fx\t", vals[0]/vals[1])
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
}

func median(rounds []figures, row string) float64 {
	var vs []float64
	for _, f := range rounds {
		vs = append(vs, f[row])
	}
	if len(vs) == 0 {
		return 0
	}
	sort.Float64s(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}
