package pgtest

import (
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Proxy forwards TCP connections to a server and misbehaves on request, as
// networks and servers do:
//
//   - LoseAnswers: the server acts on what it received, the client never
//     hears back (a network that breaks after a request went out);
//   - Down: connections are cut and new ones refused (a server that is down);
//   - Blackhole: connections stay open and nothing gets through either way,
//     new ones are accepted and never answered (a hung server, or a
//     firewall that drops packets);
//   - Delay, DelayEach: every chunk of bytes is passed on a set time after
//     it arrived, in each direction (a network's latency: chunks in flight
//     overlap, as packets do, and keep their order).
//
// Up ends Down and Blackhole; Delay(0) ends Delay. A delayed chunk's wait
// sleeps rather than spins (see waitUntil), so delays of a few hundred
// microseconds on many connections at once leave the processors to the
// client and the servers.
type Proxy struct {
	target string
	ln     net.Listener

	mu         sync.Mutex
	conns      map[*proxied]struct{}
	held       map[net.Conn]struct{} // accepted while blackholed, never answered
	total      int
	attempts   int
	refused    bool // new connections are closed at once, as a server that is down
	blackholed bool // nothing passes; new connections are held
	// delay is how long a chunk waits, by direction: [0] to the server,
	// [1] to the client.
	delay [2]time.Duration
}

// Connections is how many connections the proxy has forwarded so far.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// Attempts is how many connections clients have opened to the proxy so far:
// those forwarded, refused (Down) and held (Blackhole).
func (p *Proxy) Attempts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts
}

type proxied struct {
	client, server net.Conn
	mu             sync.Mutex
	deaf           bool // the server's bytes are dropped
	mute           bool // the client's bytes are dropped
}

// NewProxy listens on a free loopback port and forwards every connection to
// target (host:port) until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*proxied]struct{}{}, held: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		cut(p.open())
		p.release()
	})
	return p
}

// Addr is the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.attempts++
		refused, blackholed := p.refused, p.blackholed
		if blackholed {
			p.held[client] = struct{}{}
		}
		p.mu.Unlock()
		switch {
		case refused:
			_ = client.Close()
			continue
		case blackholed:
			go func() { _, _ = io.Copy(io.Discard, client) }()
			continue
		}
		server, err := (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxied{client: client, server: server}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.total++
		p.mu.Unlock()
		go func() {
			p.pump(c, client, server, 0, func() bool { return c.mute })
			_ = server.Close()
		}()
		go func() {
			p.pump(c, server, client, 1, func() bool { return c.deaf })
			_ = client.Close()
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		}()
	}
}

// pump copies from src to dst until either fails, dropping what arrives
// while dropped (read under c.mu) says so. Each chunk is written the
// proxy's delay for direction dir after it was read; reading goes on
// meanwhile, so chunks in flight overlap as on a network.
func (p *Proxy) pump(c *proxied, src, dst net.Conn, dir int, dropped func() bool) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	chunks := make(chan chunk, 256)
	go func() {
		defer close(chunks)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				delay := p.delay[dir]
				p.mu.Unlock()
				chunks <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for ch := range chunks {
		if failed {
			continue // drained until the reader ends with src
		}
		waitUntil(ch.due)
		c.mu.Lock()
		drop := dropped()
		c.mu.Unlock()
		if drop {
			continue
		}
		if _, err := dst.Write(ch.b); err != nil {
			failed = true
			_ = src.Close() // ends the reader
		}
	}
}

// waitUntil returns at t. The wait sleeps (sleepFor: nanosleep(2) on
// Linux, whose wake-up keeps microseconds where time.Sleep's rounds up to
// about a millisecond on some VMs) until sleepSlack before t, and spins
// only that last stretch, yielding the processor. A delay under a
// millisecond, as inside a region, keeps its size without holding a core:
// many connections' chunks waiting at once cost no processor time while
// they sleep, so parallel round trips overlap as they do on a network.
func waitUntil(t time.Time) {
	for {
		d := time.Until(t)
		switch {
		case d <= 0:
			return
		case d > sleepSlack:
			sleepFor(d - sleepSlack)
		default:
			runtime.Gosched()
		}
	}
}

// LoseAnswers makes every connection open now drop what the server sends
// from here on, and cuts them after the given delay (the client's request
// has reached the server and been acted on by then). Connections opened
// later work normally.
func (p *Proxy) LoseAnswers(after time.Duration) {
	cs := p.open()
	for _, c := range cs {
		c.mu.Lock()
		c.deaf = true
		c.mu.Unlock()
	}
	time.AfterFunc(after, func() { cut(cs) })
}

// Down cuts every connection open now and closes each new one at once, as
// a server that went down does to its clients (what the server had not
// committed of a cut connection's work it rolls back), until Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	p.refused = true
	p.mu.Unlock()
	cut(p.open())
}

// Blackhole makes the server hang as far as its clients can tell, until Up:
// connections open now stay open but pass nothing either way, and new
// connections are accepted and never answered. A client waits until its own
// deadline.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.blackholed = true
	p.mu.Unlock()
	for _, c := range p.open() {
		c.mu.Lock()
		c.deaf, c.mute = true, true
		c.mu.Unlock()
	}
}

// Up ends Down and Blackhole: connections get through again. Connections
// that were blackholed are cut (what they sent was lost, so they cannot go
// on), as a peer whose hang ends resets them.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.refused, p.blackholed = false, false
	p.mu.Unlock()
	var lost []*proxied
	for _, c := range p.open() {
		c.mu.Lock()
		if c.mute {
			lost = append(lost, c)
		}
		c.mu.Unlock()
	}
	cut(lost)
	p.release()
}

// Delay passes every chunk of bytes on d after it arrived, in each
// direction, on connections open now and later; Delay(0) ends it. A round
// trip through the proxy takes 2d more than without it.
func (p *Proxy) Delay(d time.Duration) { p.DelayEach(d, d) }

// DelayEach is Delay with a delay per direction: toServer for what clients
// send, toClient for what the server answers.
func (p *Proxy) DelayEach(toServer, toClient time.Duration) {
	p.mu.Lock()
	p.delay = [2]time.Duration{toServer, toClient}
	p.mu.Unlock()
}

// release closes the connections held while blackholed.
func (p *Proxy) release() {
	p.mu.Lock()
	held := p.held
	p.held = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range held {
		_ = c.Close()
	}
}

// open is the connections open now.
func (p *Proxy) open() []*proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*proxied, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

// cut closes both ends of each connection.
func cut(cs []*proxied) {
	for _, c := range cs {
		_ = c.client.Close()
		_ = c.server.Close()
	}
}

// ProxiedPool opens a pool of at most maxConns connections (pgx's default
// when 0) to the database of url through a new Proxy, for a test to fail
// them; both go when the test ends.
func ProxiedPool(t testing.TB, url string, maxConns int32) (*pgxpool.Pool, *Proxy) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	host, port, _ := net.SplitHostPort(p.Addr())
	n, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(n)
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, p
}
