package kubelet

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The images, from the conformance registry through cradle's mirror config.
const (
	busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	nginx   = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
)

// Host ports the pods take (hostPort and hostNetwork).
const (
	hostPortWeb = 18080
	hostNetPort = 18081
)

// flaky is a shell script that fails (exit code) on its first `fails`
// starts, counted in /data, and then runs; every start time goes to /data/starts.
const flaky = `date +%s >> /data/starts; n=$(wc -l < /data/starts); if [ "$n" -le 2 ]; then echo "start $n: failing"; exit 3; fi; echo "start $n: running"; exec sleep 100000`

func int64p(v int64) *int64 { return &v }

func sh(script string) []string { return []string{"sh", "-c", script} }

func ctr(name, image string, cmd ...string) corev1.Container {
	return corev1.Container{Name: name, Image: image, Command: cmd, ImagePullPolicy: corev1.PullIfNotPresent}
}

func pod(name string, spec corev1.PodSpec) *corev1.Pod {
	if spec.TerminationGracePeriodSeconds == nil {
		spec.TerminationGracePeriodSeconds = int64p(2)
	}
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: spec}
}

func emptyDir(name string, medium corev1.StorageMedium) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: medium}}}
}

func mount(name, path string) corev1.VolumeMount {
	return corev1.VolumeMount{Name: name, MountPath: path}
}

func execProbe(period int32, cmd ...string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}},
		PeriodSeconds: period, TimeoutSeconds: 2, FailureThreshold: 2}
}

func httpProbe(port int) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(int32(port))}},
		PeriodSeconds: 1, FailureThreshold: 30}
}

func tcpProbe(port int) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}},
		PeriodSeconds: 1, FailureThreshold: 30}
}

func resources(reqCPU, reqMem, limCPU, limMem string) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, x := range []struct {
		l    corev1.ResourceList
		name corev1.ResourceName
		v    string
	}{{r.Requests, corev1.ResourceCPU, reqCPU}, {r.Requests, corev1.ResourceMemory, reqMem}, {r.Limits, corev1.ResourceCPU, limCPU}, {r.Limits, corev1.ResourceMemory, limMem}} {
		if x.v != "" {
			x.l[x.name] = resource.MustParse(x.v)
		}
	}
	return r
}

// staticPods are the pods kubelet starts from its manifest directory, by name.
func staticPods(hostData string) map[string]*corev1.Pod {
	sleeper := func(name string) corev1.Container { return ctr(name, busybox, sh("exec sleep 100000")...) }
	guaranteed, burstable := sleeper("app"), sleeper("app")
	guaranteed.Resources = resources("100m", "64Mi", "100m", "64Mi")
	burstable.Resources = resources("50m", "32Mi", "", "128Mi")
	hostWeb := ctr("web", nginx)
	hostWeb.Env = []corev1.EnvVar{{Name: "WEB_PORT", Value: "18081"}}
	hostWeb.ReadinessProbe = httpProbe(hostNetPort)
	// talker writes about 5 KiB/s: kubelet rotates its log (10 KiB) every few seconds.
	talker := ctr("talker", busybox, sh(`i=0; pad=$(printf '%0200d' 0); while true; do echo "line $i $pad"; i=$((i+1)); sleep 0.04; done`)...)
	return map[string]*corev1.Pod{
		"probes":            pod("probes", probesSpec()),
		"liveness":          pod("liveness", livenessSpec()),
		"restart-always":    pod("restart-always", flakySpec(corev1.RestartPolicyAlways)),
		"restart-onfailure": pod("restart-onfailure", flakySpec(corev1.RestartPolicyOnFailure)),
		"volumes":           pod("volumes", volumesSpec(hostData)),
		"qos-guaranteed":    pod("qos-guaranteed", corev1.PodSpec{Containers: []corev1.Container{guaranteed}}),
		"qos-burstable":     pod("qos-burstable", corev1.PodSpec{Containers: []corev1.Container{burstable}}),
		"qos-besteffort":    pod("qos-besteffort", corev1.PodSpec{Containers: []corev1.Container{sleeper("app")}}),
		"sharepid": pod("sharepid", corev1.PodSpec{ShareProcessNamespace: boolp(true), Containers: []corev1.Container{
			ctr("a", busybox, "sleep", "100001"), ctr("b", busybox, "sleep", "100002")}}),
		"hostnet":  pod("hostnet", corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{hostWeb}}),
		"logs":     pod("logs", corev1.PodSpec{Containers: []corev1.Container{talker}}),
		"graceful": pod("graceful", gracefulSpec(hostData)),
	}
}

// probesSpec: two init containers, then nginx behind httpGet and tcpSocket
// probes (and a hostPort) and a side container whose exec readiness probe
// fails for 3 s, until it writes the time to /tmp/ready.
func probesSpec() corev1.PodSpec {
	work := []corev1.VolumeMount{mount("work", "/work")}
	web := ctr("web", nginx)
	web.Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: hostPortWeb, Protocol: corev1.ProtocolTCP}}
	web.StartupProbe, web.ReadinessProbe, web.LivenessProbe = httpProbe(80), httpProbe(80), tcpProbe(80)
	side := ctr("side", busybox, sh("cat /work/init; sleep 3; date +%s > /tmp/t; mv /tmp/t /tmp/ready; exec sleep 100000")...)
	side.VolumeMounts, side.ReadinessProbe, side.LivenessProbe = work, execProbe(1, "cat", "/tmp/ready"), execProbe(2, "true")
	init1 := ctr("init1", busybox, sh("echo one > /work/init")...)
	init2 := ctr("init2", busybox, sh("grep -q one /work/init && echo two >> /work/init")...)
	init1.VolumeMounts, init2.VolumeMounts = work, work
	return corev1.PodSpec{InitContainers: []corev1.Container{init1, init2},
		Containers: []corev1.Container{web, side}, Volumes: []corev1.Volume{emptyDir("work", "")}}
}

// livenessSpec: lively fails its exec liveness probe once (killed and
// restarted); late starts listening after 4 s (tcpSocket startup probe),
// when it has written the time to /tmp/listening.
func livenessSpec() corev1.PodSpec {
	lively := ctr("lively", busybox, sh("touch /tmp/alive; if [ ! -e /data/once ]; then touch /data/once; sleep 6; rm /tmp/alive; fi; exec sleep 100000")...)
	lively.VolumeMounts = []corev1.VolumeMount{mount("data", "/data")}
	lively.LivenessProbe = execProbe(1, "test", "-e", "/tmp/alive")
	late := ctr("late", nginx, sh("sleep 4; date +%s > /tmp/listening; WEB_PORT=8081 exec /usr/sbin/nginx")...)
	late.StartupProbe, late.LivenessProbe, late.ReadinessProbe = tcpProbe(8081), httpProbe(8081), tcpProbe(8081)
	return corev1.PodSpec{Containers: []corev1.Container{lively, late}, Volumes: []corev1.Volume{emptyDir("data", "")}}
}

// flakySpec: a container that exits 3 on its first two starts.
func flakySpec(policy corev1.RestartPolicy) corev1.PodSpec {
	c := ctr("flaky", busybox, sh(flaky)...)
	c.VolumeMounts = []corev1.VolumeMount{mount("data", "/data")}
	return corev1.PodSpec{RestartPolicy: policy, Containers: []corev1.Container{c}, Volumes: []corev1.Volume{emptyDir("data", "")}}
}

// volumesSpec: emptyDir on disk and in memory and a hostPath, written by
// one container and read by the other (its readiness probe).
func volumesSpec(hostData string) corev1.PodSpec {
	writer := ctr("writer", busybox, sh("echo disk > /scratch/a; echo mem > /mem/b; echo host > /host/c; exec sleep 100000")...)
	reader := ctr("reader", busybox, sh("exec sleep 100000")...)
	shared := []corev1.VolumeMount{mount("scratch", "/scratch"), mount("mem", "/mem"), mount("host", "/host")}
	writer.VolumeMounts, reader.VolumeMounts = shared, shared
	reader.ReadinessProbe = execProbe(1, "cat", "/scratch/a", "/mem/b", "/host/c")
	return corev1.PodSpec{Containers: []corev1.Container{writer, reader}, Volumes: []corev1.Volume{
		emptyDir("scratch", ""), emptyDir("mem", corev1.StorageMediumMemory), hostPath("host", hostData)}}
}

func hostPath(name, path string) corev1.Volume {
	t := corev1.HostPathDirectoryOrCreate
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &t}}}
}

// gracefulSpec: a preStop hook and a container that ends on SIGTERM, one
// that ignores it (sleep as PID 1): the pod goes after its grace period.
func gracefulSpec(hostData string) corev1.PodSpec {
	polite := ctr("polite", busybox, sh(`trap 'echo term >> /host/term; exit 0' TERM; while true; do sleep 0.2; done`)...)
	polite.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
		Command: sh("echo prestop >> /host/prestop")}}}
	polite.VolumeMounts = []corev1.VolumeMount{mount("host", "/host")}
	stubborn := ctr("stubborn", busybox, "sleep", "100003")
	return corev1.PodSpec{TerminationGracePeriodSeconds: int64p(gracePeriod), Containers: []corev1.Container{polite, stubborn},
		Volumes: []corev1.Volume{hostPath("host", filepath.Join(hostData, "graceful"))}}
}

// gracePeriod of the graceful pod, in seconds.
const gracePeriod = 6

func boolp(v bool) *bool { return &v }

// writeManifest puts a pod into kubelet's static pod directory (written
// aside and renamed: kubelet never reads half a file).
func (e *env) writeManifest(t testing.TB, p *corev1.Pod) {
	t.Helper()
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tmp := e.path(".manifest.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.path("manifests", p.Name+".json")); err != nil {
		t.Fatal(err)
	}
}

func (e *env) removeManifest(t testing.TB, name string) {
	t.Helper()
	if err := os.Remove(e.path("manifests", name+".json")); err != nil {
		t.Fatal(err)
	}
}
