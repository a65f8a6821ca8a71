package cri

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/cradle-runtime/cradle/pkg/storage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func toCRIImage(img storage.Image) *runtime.Image {
	out := &runtime.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Spec:        &runtime.ImageSpec{Image: img.ID},
		Pinned:      img.Pinned,
	}
	uid, name := imageUser(img.Config.Config.User)
	if uid != nil {
		out.Uid = &runtime.Int64Value{Value: *uid}
	}
	out.Username = name
	return out
}

// imageUser splits an image config's User ("1000", "www-data", "1000:1000",
// "www-data:33") into a uid or a user name, as kubelet's runAsNonRoot checks
// expect: exactly one of the two is set, or neither for an empty User.
func imageUser(user string) (*int64, string) {
	if user == "" {
		return nil, ""
	}
	u, _, _ := strings.Cut(user, ":")
	if id, err := strconv.ParseInt(u, 10, 64); err == nil {
		return &id, ""
	}
	return nil, u
}

// imageVerboseInfo is ImageStatus's verbose "info": the image config and how
// the image is stored, as containerd reports it.
func imageVerboseInfo(img storage.Image) (map[string]string, error) {
	info := struct {
		ImageSpec ocispec.Image      `json:"imageSpec"`
		ChainID   string             `json:"chainID"`
		Target    ocispec.Descriptor `json:"target"`
		Manifest  ocispec.Descriptor `json:"manifest"`
	}{img.Config, img.ChainID.String(), img.Target, img.Manifest}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode image info: %w", err)
	}
	return map[string]string{"info": string(b)}, nil
}

func toFsUsage(now int64, u storage.FsUsage) *runtime.FilesystemUsage {
	return &runtime.FilesystemUsage{
		Timestamp:  now,
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtime.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtime.UInt64Value{Value: u.Inodes},
	}
}

// containerUser is the identity a container's process runs as.
func containerUser(u specs.User) *runtime.ContainerUser {
	groups := make([]int64, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int64(g))
	}
	return &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups}}
}
