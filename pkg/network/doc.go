// Package network gives pods working, isolated networking: the built-in
// network (a host bridge, a veth pair per pod, file-backed IPAM, nftables
// for masquerade and hostPorts; no extra software) or, when configured,
// standard CNI plugins through libcni. The pod sandbox engine uses it
// through a seam of two methods, Setup and Teardown.
//
// # API
//
//	m, err := network.New(ctx, cfg.Network, cfg.Root, cfg.State, log)  // + WithHostNetNS(path) for tests
//	ns, err := network.NewNetNS(m.NetNSDir(), podID)  // persistent netns: a bind mount at <state>/netns/<podID>
//	res, err := m.Setup(ctx, network.PodNetwork{PodID, Name, Namespace, NetNSPath: ns, PortMappings, HostNetwork})
//	err = m.Teardown(ctx, podID)                      // from the persisted record alone; idempotent
//	err = network.RemoveNetNS(ns)                     // unmount + remove; idempotent
//	err = m.Reconcile(ctx, livePodIDs)                // at start-up: remove everything of other pods
//	ok, reason, msg := m.Ready(ctx)                   // the CRI NetworkReady condition
//	err = m.SetPodSubnets(ctx, "10.244.1.0/24")       // UpdateRuntimeConfig's pod CIDR (builtin mode)
//	tap, err := network.AttachTap(ns, "tap0")         // microVM pods: tap ⇄ eth0 by tc mirred
//	err = network.WithNetNS(ns, func() error { ... }) // run code inside a netns (locked OS thread)
//
// The engine owns each pod's netns: it creates it with NewNetNS in
// NetNSDir before Setup and removes it with RemoveNetNS after Teardown;
// Reconcile removes those of pods that are not live. A hostNetwork pod's
// Setup only records the pod.
//
// # Persistence and recovery
//
// Setup persists a per-pod record (<state>/network/pods/<id>.json: mode,
// netns path, veth name, port mappings; IPs once known; the CNI list used)
// before it creates anything, and every multi-step create pushes an undo.
// Leases are files <root>/network/ipam/<bridge>/<ip> holding the pod ID,
// created exclusively and fsynced under an flock, so an address is never
// handed out twice, even across a crash. Host veth names are derived from
// the pod ID (vethName) and every nftables hostPort rule is tagged with it,
// so Teardown and Reconcile find everything from the pod ID alone, after a
// kill -9 at any point. Setup, Teardown and Reconcile are idempotent and
// serialised by one mutex.
//
// # Several instances on one host
//
// Daemons with different roots, states and bridges share nothing here:
// leases live under <root>/network/ipam/<bridge>, records and netns mounts
// under the state dir, veth names are hashed from pod IDs (random per
// pod), and the nftables table is the instance's own, "inet cradle-<bridge>"
// (TableName). A start rewrites only its own table's base chains and sweeps
// only its own hostport rules and the veths on its own bridge. Other
// instances' tables are read, never written, so that a hostPort one maps is
// refused to the others (AlreadyExists). The bridge is the instance's
// network identity, and the instance claims it (its alias names the root
// and daemon): a bridge claimed by a live daemon of another root is refused
// with FailedPrecondition, since the two would hand out the same addresses
// and sweep each other's veths (claim.go). The table of older
// versions, "inet cradle", shared by all, is migrated at start (see
// migrateLegacy): our pods' rules move into our table, and the old table is
// deleted only when nothing of another instance is left in it.
//
// # Errors
//
// errdefs classes wrapped with %w: InvalidArgument (bad pod input, a pod
// subnet overlapping a host route), AlreadyExists (a hostPort mapped by
// another pod or held by a socket on the host; the message names the port),
// ResourceExhausted (no free address), FailedPrecondition (no usable CNI
// configuration; changing a subnet that is in use).
//
// # Limits
//
// Built-in hostPorts are DNAT rules for traffic to a local address other
// than loopback (127.0.0.1:hostPort is not mapped). In CNI mode hostPort
// conflicts are the plugins' business, and SetPodSubnets does nothing.
package network
