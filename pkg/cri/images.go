package cri

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/storage"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *imageServer) PullImage(ctx context.Context, req *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	ref, err := imageRef(req.GetImage())
	if err != nil {
		return nil, err
	}
	img, stats, err := s.deps.Images.Pull(ctx, ref, toAuth(req.GetAuth()))
	s.deps.Metrics.ObservePull(stats.Bytes, stats.Total, err)
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: img.ID}, nil
}

func (s *imageServer) ListImages(ctx context.Context, req *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	imgs, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtime.ListImagesResponse{Images: imgs}, nil
}

func (s *imageServer) listImages(ctx context.Context, f *runtime.ImageFilter) ([]*runtime.Image, error) {
	if ref := f.GetImage().GetImage(); ref != "" {
		img, err := s.deps.Images.Get(ctx, ref)
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*runtime.Image{toCRIImage(img)}, nil
	}
	imgs := s.deps.Images.List(ctx)
	out := make([]*runtime.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, toCRIImage(img))
	}
	return out, nil
}

// ImageStatus answers an empty response, not an error, for an image that is
// not here: that is how kubelet learns it must pull.
func (s *imageServer) ImageStatus(ctx context.Context, req *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	ref, err := imageRef(req.GetImage())
	if err != nil {
		return nil, err
	}
	img, err := s.deps.Images.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		info, err := imageVerboseInfo(img)
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

func (s *imageServer) RemoveImage(ctx context.Context, req *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	ref, err := imageRef(req.GetImage())
	if err != nil {
		return nil, err
	}
	if img, err := s.deps.Images.Get(ctx, ref); err == nil && s.deps.Pods.ImagesInUse()[img.ID] {
		return nil, fmt.Errorf("image %s (%s) is mounted by a container's image volume: %w", ref, img.ID, errdefs.ErrFailedPrecondition)
	}
	if err := s.deps.Images.Remove(ctx, ref, false); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}

func (s *imageServer) ImageFsInfo(ctx context.Context, _ *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	imageFs, containerFs, err := s.deps.Images.FsUsage(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	return &runtime.ImageFsInfoResponse{
		ImageFilesystems:     []*runtime.FilesystemUsage{toFsUsage(now, imageFs)},
		ContainerFilesystems: []*runtime.FilesystemUsage{toFsUsage(now, containerFs)},
	}, nil
}

func imageRef(spec *runtime.ImageSpec) (string, error) {
	ref := spec.GetImage()
	if ref == "" {
		return "", fmt.Errorf("image spec names no image: %w", errdefs.ErrInvalidArgument)
	}
	return ref, nil
}

func toAuth(a *runtime.AuthConfig) *storage.Auth {
	if a == nil {
		return nil
	}
	return &storage.Auth{
		Username:      a.GetUsername(),
		Password:      a.GetPassword(),
		Auth:          a.GetAuth(),
		ServerAddress: a.GetServerAddress(),
		IdentityToken: a.GetIdentityToken(),
		RegistryToken: a.GetRegistryToken(),
	}
}
