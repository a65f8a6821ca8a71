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
	pod := b.in.Pod
	b.spec.Annotations = map[string]string{
		AnnotationContainerType:    ContainerTypeContainer,
		AnnotationContainerName:    b.in.Config.Name,
		AnnotationImageName:        b.imageName(),
		AnnotationSandboxID:        b.in.SandboxID,
		AnnotationSandboxName:      pod.Name,
		AnnotationSandboxNamespace: pod.Namespace,
		AnnotationSandboxUID:       pod.UID,
	}
	return nil
}

func (b *builder) imageName() string {
	switch {
	case b.in.ImageName != "":
		return b.in.ImageName
	case b.in.Config.UserSpecifiedImage != "":
		return b.in.Config.UserSpecifiedImage
	}
	return b.in.Config.Image
}
