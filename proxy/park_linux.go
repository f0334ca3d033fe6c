package proxy

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// parker holds the relay directions that went quiet, so that an idle
// connection costs no goroutine and no buffer: only its TLS state and
// sockets. Each parked direction's source socket is armed, one shot, in
// an epoll set of the parker's own (a socket may sit in several epoll
// sets, so the runtime's netpoller keeps its registration); one goroutine
// waits on that set and starts the direction again when its socket turns
// readable, its silence limit comes, or its relay is aborted.
//
// A parked direction is reachable only through the parker's maps, and
// whoever takes it out (the poller, its timer, an abort) is the only one
// to start it again.
type parker struct {
	started atomic.Bool
	epfd    int // set before started

	mu     sync.Mutex
	seq    uint64
	byID   map[uint64]*direction
	parked map[*direction]parkedDir
}

// parkedDir is what the parker keeps of a parked direction.
type parkedDir struct {
	id    uint64
	timer *time.Timer // nil: no silence limit to wake for
}

// parking is the process's parker, started on first use.
var parking parker

// epollEvents are the events that wake a parked direction: bytes, end of
// stream, or an error on its source.
const epollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// start makes the epoll set and starts the loop, once. A failure is not
// kept: epoll_create fails when no descriptor is free (EMFILE, ENFILE),
// as under a flood of connections, and parking must work again once
// descriptors are free. Until then directions wait on their goroutines.
func (p *parker) start() error {
	if p.started.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started.Load() {
		return nil
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	p.epfd = epfd
	p.byID = make(map[uint64]*direction)
	p.parked = make(map[*direction]parkedDir)
	p.started.Store(true)
	go p.loop()
	return nil
}

// available reports whether directions can park here.
func (p *parker) available() bool { return p.start() == nil }

// park takes d off its goroutine: it reports true when d is parked (the
// caller must then return at once and touch d no more), false when d
// must go on reading itself. wake, when above zero, starts d again after
// that long even without a byte, so that it can end its relay on time.
func (p *parker) park(d *direction, wake time.Duration) bool {
	p.mu.Lock()
	// Checked under the lock that abort's unpark takes: either the abort
	// sees d parked and starts it, or d sees the abort and does not park.
	if d.rl.aborted.Load() {
		p.mu.Unlock()
		return false
	}
	p.seq++
	pd := parkedDir{id: p.seq}
	if wake > 0 {
		id := pd.id
		pd.timer = time.AfterFunc(wake, func() { p.resume(p.takeID(id)) })
	}
	p.byID[pd.id] = d
	p.parked[d] = pd
	// A socket is added on its first park and modified on later ones: a
	// one-shot registration stays in the set, disarmed, until the socket
	// is closed.
	op := syscall.EPOLL_CTL_MOD
	if !d.armed {
		op, d.armed = syscall.EPOLL_CTL_ADD, true
	}
	p.mu.Unlock()

	// Arm the socket inside Control, which holds the descriptor open: a
	// relay aborted meanwhile cannot close it, and so its number cannot
	// name another socket, until the call returns. From the moment it is
	// armed, d may run on another goroutine.
	var ctlErr error
	err := d.r.sock.rc.Control(func(fd uintptr) { ctlErr = p.arm(op, int(fd), pd.id) })
	if err == nil && ctlErr == nil {
		return true
	}
	// Not armed. If d is still in the maps it is ours to run; if an abort
	// took it meanwhile, the abort starts it.
	return p.take(d) == nil
}

// arm registers fd in the epoll set for one event carrying id.
func (p *parker) arm(op, fd int, id uint64) error {
	ev := syscall.EpollEvent{Events: epollEvents, Fd: int32(id), Pad: int32(id >> 32)}
	err := syscall.EpollCtl(p.epfd, op, fd, &ev)
	switch {
	case errors.Is(err, syscall.ENOENT):
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
	case errors.Is(err, syscall.EEXIST):
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, fd, &ev)
	}
	return err
}

// loop waits for parked sockets to turn readable and starts their
// directions. It blocks one thread in epoll_wait for the life of the
// process.
func (p *parker) loop() {
	var events [128]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(p.epfd, events[:], -1)
		if err != nil {
			continue // EINTR
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.resume(p.takeID(id))
		}
	}
}

// takeID removes the direction parked under id, or returns nil when it
// has been taken already (an event that arrives after its timer, say).
func (p *parker) takeID(id uint64) *direction {
	p.mu.Lock()
	d := p.byID[id]
	p.mu.Unlock()
	if d == nil {
		return nil
	}
	return p.take(d)
}

// take removes d if it is parked and returns it, nil otherwise.
func (p *parker) take(d *direction) *direction {
	p.mu.Lock()
	pd, ok := p.parked[d]
	if ok {
		delete(p.parked, d)
		delete(p.byID, pd.id)
	}
	p.mu.Unlock()
	if !ok {
		return nil
	}
	if pd.timer != nil {
		pd.timer.Stop()
	}
	return d
}

// resume starts d again on a goroutine of its own.
func (p *parker) resume(d *direction) {
	if d != nil {
		go d.run()
	}
}

// unpark starts d again if it is parked: its relay is ending.
func (p *parker) unpark(d *direction) { p.resume(p.take(d)) }

// count returns how many directions are parked.
func (p *parker) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}
