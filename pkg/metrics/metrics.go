// Package metrics is the daemon's Prometheus instrumentation: CRI call
// latency and errors, image pulls. It owns its registry (no global state)
// and serves it on an address of its own, loopback by convention.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
)

// Metrics holds the collectors. A nil *Metrics records nothing, so callers
// need no checks when metrics are off.
type Metrics struct {
	reg          *prometheus.Registry
	criDuration  *prometheus.HistogramVec
	criErrors    *prometheus.CounterVec
	pulls        *prometheus.CounterVec
	pullBytes    prometheus.Counter
	pullDuration prometheus.Histogram
}

// New makes the collectors and a registry with Go and process metrics.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		criDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cradle", Subsystem: "cri", Name: "request_duration_seconds",
			Help:    "Latency of CRI calls by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"method"}),
		criErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cradle", Subsystem: "cri", Name: "errors_total",
			Help: "CRI calls that failed, by method and gRPC code.",
		}, []string{"method", "code"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cradle", Subsystem: "image", Name: "pulls_total",
			Help: "Image pulls by result (success or failure).",
		}, []string{"result"}),
		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cradle", Subsystem: "image", Name: "pull_bytes_total",
			Help: "Bytes received from registries by image pulls.",
		}),
		pullDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "cradle", Subsystem: "image", Name: "pull_duration_seconds",
			Help:    "Wall time of successful image pulls, fetch and unpack included.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
	}
	m.reg.MustRegister(m.criDuration, m.criErrors, m.pulls, m.pullBytes, m.pullDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveCRI records one CRI call.
func (m *Metrics) ObserveCRI(method string, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	m.criDuration.WithLabelValues(method).Observe(d.Seconds())
	if code != codes.OK {
		m.criErrors.WithLabelValues(method, code.String()).Inc()
	}
}

// ObservePull records one image pull.
func (m *Metrics) ObservePull(bytes int64, d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.pulls.WithLabelValues("failure").Inc()
		return
	}
	m.pulls.WithLabelValues("success").Inc()
	m.pullBytes.Add(float64(bytes))
	m.pullDuration.Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve listens on addr and serves /metrics until ctx ends. It returns the
// bound address at once (addr may end in :0); serving errors are logged.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return lis.Addr(), nil
}
