package pgtest

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections to a server, and on request loses the
// server's answers, as a network that breaks after a request went out does:
// the server acts on what it received, the client never hears back.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[*proxied]struct{}
	total   int
	refused bool // new connections are closed at once, as a server that is down
}

// Connections is how many connections the proxy has forwarded so far.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

type proxied struct {
	client, server net.Conn
	mu             sync.Mutex
	deaf           bool // the server's bytes are dropped
}

// NewProxy listens on a free loopback port and forwards every connection to
// target (host:port) until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*proxied]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		cut(p.open())
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
		refused := p.refused
		p.mu.Unlock()
		if refused {
			_ = client.Close()
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
			_, _ = io.Copy(server, client)
			_ = server.Close()
		}()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				c.mu.Lock()
				deaf := c.deaf
				c.mu.Unlock()
				if n > 0 && !deaf {
					if _, werr := client.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = client.Close()
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		}()
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

// Up lets connections through again after Down.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.refused = false
	p.mu.Unlock()
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
