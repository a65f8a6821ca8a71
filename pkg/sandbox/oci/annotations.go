package oci

import "context"

// Annotation keys, the same as containerd's so that tools reading specs
// (NRI plugins, OCI hooks, kata's agent) find what they expect.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"

	// ContainerTypeContainer marks an application container.
	ContainerTypeContainer = "container"
)

// annotations records who the container is.
func (b *builder) annotations(context.Context) error {
	meta := b.in.Sandbox.GetMetadata()
	b.spec.Annotations = map[string]string{
		AnnotationContainerType:    ContainerTypeContainer,
		AnnotationContainerName:    b.in.Config.GetMetadata().GetName(),
		AnnotationImageName:        b.imageName(),
		AnnotationSandboxID:        b.in.SandboxID,
		AnnotationSandboxName:      meta.GetName(),
		AnnotationSandboxNamespace: meta.GetNamespace(),
		AnnotationSandboxUID:       meta.GetUid(),
	}
	return nil
}

func (b *builder) imageName() string {
	img := b.in.Config.GetImage()
	switch {
	case b.in.ImageName != "":
		return b.in.ImageName
	case img.GetUserSpecifiedImage() != "":
		return img.GetUserSpecifiedImage()
	}
	return img.GetImage()
}
