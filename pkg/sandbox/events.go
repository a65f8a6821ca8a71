package sandbox

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// EventType is a lifecycle step of a container, or of a pod sandbox (whose
// events carry the pod's ID, as the CRI's evented PLEG expects).
type EventType int

// Event types, in the order an object goes through them.
const (
	EventCreated EventType = iota
	EventStarted
	EventStopped
	EventDeleted
)

var eventTypeNames = [...]string{"Created", "Started", "Stopped", "Deleted"}

func (t EventType) String() string {
	if int(t) < len(eventTypeNames) {
		return eventTypeNames[t]
	}
	return "EventType(?)"
}

// Event is one lifecycle step with the state of the pod and of its
// containers right after it, so a subscriber needs no further call.
type Event struct {
	Type       EventType
	ID         string // the container's ID, or the pod's for the pod's own events
	PodID      string
	At         time.Time
	Pod        Pod         // the pod after the step
	Containers []Container // the pod's containers after the step, oldest first (a deleted one is left out)
}

// DefaultEventBuffer is how many events a subscriber may fall behind by
// before it is cut off.
const DefaultEventBuffer = 1024

// Subscription receives events on C until it is closed by Close, or cut off
// because its reader fell behind (then C is closed and Lagged is true).
type Subscription struct {
	C      <-chan Event
	ch     chan Event
	b      *broker
	lagged atomic.Bool
}

// Lagged reports whether the subscription was cut off for falling behind:
// events were lost, and the subscriber must list again.
func (s *Subscription) Lagged() bool { return s.lagged.Load() }

// Close ends the subscription; it is idempotent.
func (s *Subscription) Close() { s.b.remove(s, false) }

// broker fans events out to subscribers. Publishing never blocks: a
// subscriber whose buffer is full is cut off (counted and logged), since a
// subscriber that silently misses a step would act on a wrong picture; the
// CRI's evented PLEG relists when its stream ends.
type broker struct {
	buffer int
	log    *slog.Logger

	mu   sync.Mutex
	subs map[*Subscription]struct{}
	n    atomic.Int32 // len(subs), read without the lock
	cut  atomic.Uint64
}

func newBroker(buffer int, log *slog.Logger) *broker {
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	return &broker{buffer: buffer, log: log, subs: map[*Subscription]struct{}{}}
}

func (b *broker) subscribe() *Subscription {
	ch := make(chan Event, b.buffer)
	s := &Subscription{C: ch, ch: ch, b: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.n.Store(int32(len(b.subs)))
	b.mu.Unlock()
	return s
}

func (b *broker) remove(s *Subscription, lagged bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeLocked(s, lagged)
}

func (b *broker) removeLocked(s *Subscription, lagged bool) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	b.n.Store(int32(len(b.subs)))
	s.lagged.Store(lagged)
	close(s.ch)
}

// active reports whether anyone listens (to skip building events).
func (b *broker) active() bool { return b.n.Load() > 0 }

// publish hands ev to every subscriber without blocking.
func (b *broker) publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			b.cut.Add(1)
			b.log.Warn("event subscriber fell behind: cut off", "buffer", b.buffer, "event", ev.Type.String(), "id", ev.ID)
			b.removeLocked(s, true)
		}
	}
}

// SubscribeEvents returns a subscription to every container and pod
// lifecycle event from now on. The caller must Close it.
func (m *Manager) SubscribeEvents() *Subscription { return m.events.subscribe() }

// emitContainer publishes a container's event. The caller holds the
// container's entry lock, so one container's events leave in order; the pod
// and the other containers come from their checkpointed snapshots, so no
// other lock is taken.
func (m *Manager) emitContainer(t EventType, c *Container) {
	if !m.events.active() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ev := Event{Type: t, ID: c.ID, PodID: c.PodID, At: time.Now(), Containers: m.seenContainersLocked(c.PodID)}
	if pe := m.pods[c.PodID]; pe != nil {
		ev.Pod = pe.seen.clone()
	}
	m.events.publish(ev)
}

// emitPod publishes a pod's own event; the caller holds the pod's lock.
func (m *Manager) emitPod(t EventType, pod *Pod) {
	if !m.events.active() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events.publish(Event{Type: t, ID: pod.ID, PodID: pod.ID, At: time.Now(), Pod: pod.clone(),
		Containers: m.seenContainersLocked(pod.ID)})
}

// seenContainersLocked lists the snapshots of a pod's containers; m.mu is held.
func (m *Manager) seenContainersLocked(podID string) []Container {
	var out []Container
	for _, e := range m.containers {
		if e.seen.PodID == podID && e.seen.State != ContainerCreating {
			out = append(out, e.seen)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// EventSubscribersCut counts subscribers cut off for falling behind.
func (m *Manager) EventSubscribersCut() uint64 { return m.events.cut.Load() }
