package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func spec(ref string) *runtime.ImageSpec { return &runtime.ImageSpec{Image: ref} }

func TestImageLifecycle(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	busybox := fixtures.Busybox(t)
	reg.Push(t, reg.Ref("busybox:1"), busybox)
	reg.Push(t, reg.Ref("busybox:2"), busybox)
	reg.Push(t, reg.Ref("uid:1"), fixtures.NonRoot(t, "1000:1000"))
	reg.Push(t, reg.Ref("named:1"), fixtures.NonRoot(t, "www-data"))
	d := newDaemon(t, "")
	ctx := ctxT(t)

	pulled, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("busybox:1"))})
	if err != nil {
		t.Fatal(err)
	}
	cfgDigest, _ := busybox.ConfigName()
	if pulled.ImageRef != cfgDigest.String() {
		t.Errorf("PullImage ref = %s, want the image ID %s", pulled.ImageRef, cfgDigest)
	}
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("busybox:2"))}); err != nil {
		t.Fatal(err)
	}
	manifestDigest, _ := busybox.Digest()
	for _, ref := range []string{reg.Ref("busybox:1"), pulled.ImageRef, reg.Ref("busybox@" + manifestDigest.String()), pulled.ImageRef[7:19]} {
		st, err := d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(ref), Verbose: true})
		if err != nil || st.Image == nil || st.Image.Id != pulled.ImageRef {
			t.Fatalf("ImageStatus(%s) = %v, %v", ref, st, err)
		}
		if len(st.Image.RepoTags) != 2 || len(st.Image.RepoDigests) != 1 || st.Image.Size == 0 || !contains(st.Info["info"], "chainID") {
			t.Errorf("ImageStatus(%s) = %+v info %v", ref, st.Image, st.Info)
		}
	}

	uid, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("uid:1"))})
	if err != nil {
		t.Fatal(err)
	}
	named, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("named:1"))})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(uid.ImageRef)})
	if st.GetImage().GetUid().GetValue() != 1000 || st.Image.Username != "" {
		t.Errorf("uid image: uid %v username %q", st.GetImage().GetUid(), st.GetImage().GetUsername())
	}
	st, _ = d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(named.ImageRef)})
	if st.GetImage().GetUid() != nil || st.GetImage().GetUsername() != "www-data" {
		t.Errorf("named image: uid %v username %q", st.GetImage().GetUid(), st.GetImage().GetUsername())
	}

	list, err := d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil || len(list.Images) != 3 {
		t.Fatalf("ListImages = %d images, %v", len(list.GetImages()), err)
	}
	list, err = d.Images.ListImages(ctx, &runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: spec(reg.Ref("named:1"))}})
	if err != nil || len(list.Images) != 1 || list.Images[0].Id != named.ImageRef {
		t.Errorf("ListImages with filter = %v, %v", list, err)
	}

	fs, err := d.Images.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
	if err != nil || len(fs.ImageFilesystems) != 1 || fs.ImageFilesystems[0].UsedBytes.GetValue() == 0 ||
		fs.ImageFilesystems[0].InodesUsed.GetValue() == 0 || len(fs.ContainerFilesystems) != 1 ||
		fs.ImageFilesystems[0].FsId.GetMountpoint() == "" {
		t.Errorf("ImageFsInfo = %v, %v", fs, err)
	}

	// Remove one tag, then the image by ID; again is fine.
	if _, err := d.Images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec(reg.Ref("busybox:1"))}); err != nil {
		t.Fatal(err)
	}
	st, _ = d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(pulled.ImageRef)})
	if len(st.GetImage().GetRepoTags()) != 1 {
		t.Errorf("after removing one tag: %v", st.GetImage().GetRepoTags())
	}
	for range 2 {
		if _, err := d.Images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec(pulled.ImageRef)}); err != nil {
			t.Fatal(err)
		}
	}
	st, err = d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(reg.Ref("busybox:2"))})
	if err != nil || st.Image != nil {
		t.Errorf("ImageStatus of a removed image = %v, %v; want an empty answer", st, err)
	}
}

func TestImageBadInput(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	d := newDaemon(t, "")
	ctx := ctxT(t)
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"pull malformed", func() error {
			_, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec("Not A Ref")})
			return err
		}, codes.InvalidArgument},
		{"pull empty", func() error {
			_, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec("")})
			return err
		}, codes.InvalidArgument},
		{"pull unknown", func() error {
			_, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("nope:1"))})
			return err
		}, codes.NotFound},
		{"pull unreachable", func() error {
			_, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec("127.0.0.1:1/busybox:1")})
			return err
		}, codes.Unavailable},
		{"status malformed", func() error {
			_, err := d.Images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec("Not A Ref")})
			return err
		}, codes.InvalidArgument},
		{"remove empty", func() error {
			_, err := d.Images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec("")})
			return err
		}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); status.Code(err) != tt.want {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	list, err := d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil || len(list.Images) != 0 {
		t.Errorf("bad input left images: %v %v", list, err)
	}
}

func TestRestartKeepsImages(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	idx, _ := fixtures.MultiArch(t)
	reg.PushIndex(t, reg.Ref("multi:1"), idx)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	d := newDaemon(t, "")
	ctx := ctxT(t)
	for _, r := range []string{"multi:1", "busybox:1"} {
		if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref(r))}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	d.Stop()
	d.Start()
	after, err := d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Images) != len(before.Images) {
		t.Fatalf("images before %d, after restart %d", len(before.Images), len(after.Images))
	}
	for i := range before.Images {
		if before.Images[i].String() != after.Images[i].String() {
			t.Errorf("image changed across restart:\n%v\n%v", before.Images[i], after.Images[i])
		}
	}
}

// kill -9 in the middle of a pull: after restart the store holds nothing of
// the interrupted pull, and the same pull then succeeds.
func TestKill9DuringPull(t *testing.T) {
	var throttle atomic.Bool
	throttle.Store(true)
	reg := fixtures.StartRegistry(t, fixtures.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if throttle.Load() {
				w = slowWriter{w}
			}
			next.ServeHTTP(w, r)
		})
	}))
	reg.Push(t, reg.Ref("large:1"), fixtures.Large(t, 4, 8<<20))
	d := newDaemon(t, "")
	ctx := ctxT(t)

	pullErr := make(chan error, 1)
	go func() {
		_, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("large:1"))})
		pullErr <- err
	}()
	deadline := time.Now().Add(time.Minute)
	for reg.BlobBytesServed() < 6<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("pull did not get going: %d bytes served", reg.BlobBytesServed())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Kill9()
	if err := <-pullErr; err == nil {
		t.Fatal("pull finished before the kill; make the image larger or slower")
	}
	throttle.Store(false)

	d.Start()
	list, err := d.Images.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil || len(list.Images) != 0 {
		t.Errorf("after restart: %v, %v", list, err)
	}
	for _, dir := range []string{"images/content/blobs/sha256", "images/content/ingest", "images/snapshots/snapshots"} {
		entries, _ := os.ReadDir(filepath.Join(d.Root, dir))
		if len(entries) != 0 {
			t.Errorf("%s holds %d entries after recovery", dir, len(entries))
		}
	}
	if !contains(d.Logs(), "dropping lease of an interrupted pull") {
		t.Errorf("recovery did not report the interrupted pull")
	}
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("large:1"))}); err != nil {
		t.Fatalf("pull after recovery: %v", err)
	}
}

// slowWriter paces a response: each write waits a little.
type slowWriter struct{ http.ResponseWriter }

func (w slowWriter) Write(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	return w.ResponseWriter.Write(p)
}

func (w slowWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
