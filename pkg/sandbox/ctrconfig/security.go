package ctrconfig

// Security is a container's security context (the CRI's
// LinuxContainerSecurityContext).
type Security struct {
	Privileged   bool
	Capabilities Capabilities
	Namespaces   Namespaces
	SELinux      *SELinux `json:",omitempty"`
	// RunAsUser and RunAsGroup are nil when not given; RunAsUsername
	// names the user instead of RunAsUser.
	RunAsUser          *int64
	RunAsGroup         *int64
	RunAsUsername      string
	ReadonlyRootfs     bool
	SupplementalGroups []int64
	// SupplementalGroupsPolicy says whether the image's group memberships
	// count.
	SupplementalGroupsPolicy GroupsPolicy
	NoNewPrivs               bool
	// MaskedPaths and ReadonlyPaths are kubelet's; none given means the
	// runtime's defaults (outside a user namespace).
	MaskedPaths   []string
	ReadonlyPaths []string
	// Seccomp nil is no filter; AppArmor nil is the runtime's default.
	Seccomp  *SecurityProfile
	AppArmor *SecurityProfile
}

// Capabilities are the changes to the default capability set; names
// with or without CAP_, "ALL" for every one.
type Capabilities struct {
	Add        []string
	Drop       []string
	AddAmbient []string
}

// Namespaces are a container's namespace options. Its network and IPC
// namespaces are its pod's whatever it says; its PID mode is its own.
type Namespaces struct {
	Network NamespaceMode
	PID     NamespaceMode
	IPC     NamespaceMode
	// TargetID is the container whose PID namespace PID mode
	// NamespaceTarget joins.
	TargetID string
	// UserNS repeats the pod's user namespace options, nil when none.
	UserNS *UserNS `json:",omitempty"`
}

// UserNS are user namespace options.
type UserNS struct {
	Mode NamespaceMode
	UIDs []IDMapping
	GIDs []IDMapping
}

// SELinux is an SELinux label.
type SELinux struct {
	User, Role, Type, Level string
}

// GroupsPolicy is the CRI's SupplementalGroupsPolicy (same values).
type GroupsPolicy int

// Supplemental groups policies.
const (
	// GroupsMerge adds the groups the image's /etc/group gives the user.
	GroupsMerge GroupsPolicy = iota
	// GroupsStrict keeps only the primary and the requested groups.
	GroupsStrict
)

// SecurityProfile is a seccomp or AppArmor profile.
type SecurityProfile struct {
	Type ProfileType
	// LocalhostRef names a Localhost profile (a seccomp profile's
	// absolute path, an AppArmor profile's name).
	LocalhostRef string `json:",omitempty"`
}

// ProfileType is the CRI's SecurityProfile.ProfileType (same values).
type ProfileType int

// Profile types.
const (
	ProfileRuntimeDefault ProfileType = iota
	ProfileUnconfined
	ProfileLocalhost
)

// Pod is what a container's spec takes from its pod's config.
type Pod struct {
	Name      string
	Namespace string
	UID       string
	// Hostname is the hostname the pod's config asks for, "" when it
	// names none: containers' HOSTNAME and, in a UTS namespace of their
	// own, their hostname.
	Hostname   string
	Network    NamespaceMode
	PID        NamespaceMode
	IPC        NamespaceMode
	UserNS     *IDMappings // nil: the host's users
	Privileged bool
	Sysctls    map[string]string
}
