package history

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// proxy forwards TCP connections to one server and acts on the COMMITs it
// sees pass: a fault armed with armCommit for a write fires at the next
// COMMIT of a connection that write's statements went through (each
// statement of a history's write carries its op's marker, opMarker; a
// connection is the write's from its first marked statement to the next
// BEGIN). The pools that go through it run in pgx.QueryExecModeExec, so
// every statement's text travels with it.
//
// It also learns when the server is done with what a write sent: a
// connection its client leaves (a cancelled or killed caller, a cut) keeps
// its server side until the server ends it, and settled says when that
// server last answered, by the connection's write.
type proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	conns map[*proxied]struct{}
	left  []*proxied // connections whose client left, in the order it did
	armed []*arm     // fired in order, one per COMMIT seen
	down  bool       // connections are refused, as by a server that is down
}

// setDown makes the server look down (every client cut, new ones refused)
// or up again. The servers' sides run what they had read and end, as a
// backend does when its client's network goes away.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.client.Close()
		}
	}
}

// settled is, for each write whose connection's client left before
// before, when the server last answered on such a connection, once the
// server ended it. A connection the server has not ended within wait (a
// backend still waiting) counts as answering when the wait gave up.
func (p *proxy) settled(before time.Time, wait time.Duration) map[int]time.Time {
	p.mu.Lock()
	left := slices.Clone(p.left)
	p.mu.Unlock()
	out := map[int]time.Time{}
	deadline := time.After(wait)
	gaveUp := false
	for _, c := range left {
		c.mu.Lock()
		op, at := c.leftOp, c.leftAt
		c.mu.Unlock()
		if op == 0 || !at.Before(before) {
			continue
		}
		answered := time.Time{}
		if !gaveUp {
			select {
			case <-c.ended:
			case <-deadline:
				gaveUp = true
			}
		}
		select {
		case <-c.ended:
			c.mu.Lock()
			answered = c.answeredAt
			c.mu.Unlock()
		default:
			answered = time.Now()
		}
		if answered.After(out[op]) {
			out[op] = answered
		}
	}
	return out
}

type proxied struct {
	client, server net.Conn
	op             int // the write whose marker the client sent last (0: none, or a transaction began since)
	mu             sync.Mutex
	deaf           bool
	holdUntil      time.Time // the server's answers wait until then
	// The server's side of c stays open after the client leaves, until
	// the server ends it (ended closes then): a backend runs what it has
	// read (a COMMIT whose caller stopped waiting, late behind a lock or
	// the processor) before it sees the end. answeredAt is when the
	// server last sent something; leftOp and leftAt are c's write and the
	// time when the client left (leftAt zero while it is there).
	answeredAt time.Time
	leftOp     int
	leftAt     time.Time
	ended      chan struct{}
}

// delayAnswers holds what the server sends on c for d: the client acts
// (cancels) after its COMMIT went out and before the answer comes back.
func (c *proxied) delayAnswers(d time.Duration) {
	c.mu.Lock()
	c.holdUntil = time.Now().Add(d)
	c.mu.Unlock()
}

// loseAnswers drops what the server sends on c from now on and cuts the
// client off after a moment. The server's side stays open until the server
// ends it: a backend that runs the COMMIT late (waiting for a lock, or for
// the processor) still commits, and proxy.settled tells when.
func (c *proxied) loseAnswers() {
	c.mu.Lock()
	c.deaf = true
	c.mu.Unlock()
	time.AfterFunc(50*time.Millisecond, func() { _ = c.client.Close() })
}

func newProxy(target string) (*proxy, error) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{target: target, ln: ln, conns: map[*proxied]struct{}{}}
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// close stops listening and cuts every connection.
func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.client.Close()
		_ = c.server.Close()
	}
}

// armCommit has fn run (with the connection) when the next COMMIT passes.
// The returned function disarms it if it has not fired.
func (p *proxy) armCommit(op int, fn func(c *proxied)) (disarm func()) {
	a := &arm{op: op, fn: fn}
	p.mu.Lock()
	p.armed = append(p.armed, a)
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		a.done = true
		p.mu.Unlock()
	}
}

// next takes the first fault armed for write op that has not fired or
// been disarmed, and forgets those that have.
func (p *proxy) next(op int) func(*proxied) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = slices.DeleteFunc(p.armed, func(a *arm) bool { return a.done })
	for _, a := range p.armed {
		if a.op == op {
			a.done = true
			return a.fn
		}
	}
	return nil
}

type arm struct {
	op   int
	fn   func(*proxied)
	done bool
}

// opMarker starts every statement of a history's write: the proxy learns
// from it which write a connection serves.
func opMarker(id int) string { return "/*pgshift-history o" + strconv.Itoa(id) + "*/ " }

var markerText = []byte("/*pgshift-history o")

// lastOp is the op of the last marker in b, or 0.
func lastOp(b []byte) int {
	i := bytes.LastIndex(b, markerText)
	if i < 0 {
		return 0
	}
	rest := b[i+len(markerText):]
	n := 0
	for _, ch := range rest {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
}

var (
	commitText = []byte("COMMIT")
	beginText  = []byte("begin") // as pgx sends it
)

// forward sends what the client sends on c to the server, noting the write
// it serves and firing the faults armed for that write's COMMITs. When the
// client leaves, the server's side is closed for writing only: the server
// ends c once it has done what it read.
func (c *proxied) forward(p *proxy) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if op := lastOp(chunk); op != 0 {
				c.op = op // this goroutine alone reads and writes it
			} else if bytes.Contains(chunk, beginText) {
				c.op = 0 // another transaction: no write's until its marker
			}
			var fire func(*proxied)
			if c.op != 0 && bytes.Contains(chunk, commitText) {
				fire = p.next(c.op)
			}
			if _, werr := c.server.Write(chunk); werr != nil {
				err = werr
			}
			if fire != nil {
				fire(c)
			}
		}
		if err != nil {
			break
		}
	}
	c.mu.Lock()
	c.leftOp, c.leftAt = c.op, time.Now()
	c.mu.Unlock()
	p.mu.Lock()
	p.left = append(p.left, c)
	p.mu.Unlock()
	if tc, ok := c.server.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.server.Close()
}

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = client.Close()
			continue
		}
		server, err := (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxied{client: client, server: server, ended: make(chan struct{})}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go c.forward(p)
		go c.answer(p)
	}
}

// answer forwards what the server sends on c to the client, each chunk
// once its hold (delayAnswers) is over, and notes when the server sent
// it: the reading never waits for a hold, so answeredAt is the server's
// time, not the client's.
func (c *proxied) answer(p *proxy) {
	chunks := make(chan []byte, 1024)
	go func() {
		defer close(chunks)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.server.Read(buf)
			if n > 0 {
				c.mu.Lock()
				c.answeredAt = time.Now()
				c.mu.Unlock()
				chunks <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				return
			}
		}
	}()
	clientGone := false
	for chunk := range chunks {
		c.mu.Lock()
		deaf, hold := c.deaf, time.Until(c.holdUntil)
		c.mu.Unlock()
		if hold > 0 {
			time.Sleep(hold)
		}
		if deaf || clientGone {
			continue
		}
		if _, err := c.client.Write(chunk); err != nil {
			clientGone = true // read on until the server ends c
		}
	}
	close(c.ended)
	_ = c.server.Close()
	_ = c.client.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
