package history

import (
	"bytes"
	"context"
	"net"
	"sync"
	"time"
)

// proxy forwards TCP connections to one server and acts on the COMMITs it
// sees pass: a fault armed with armCommit fires at the next COMMIT any
// connection sends. The pools that go through it run in
// pgx.QueryExecModeExec, so every statement's text travels with it.
type proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	conns map[*proxied]struct{}
	armed []*arm // fired in order, one per COMMIT seen
	down  bool   // connections are refused, as by a server that is down
}

// setDown makes the server look down (every connection cut, new ones
// refused) or up again.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.client.Close()
			_ = c.server.Close()
		}
	}
}

type proxied struct {
	client, server net.Conn
	mu             sync.Mutex
	deaf           bool
	holdUntil      time.Time // the server's answers wait until then
}

// delayAnswers holds what the server sends on c for d: the client acts
// (cancels) after its COMMIT went out and before the answer comes back.
func (c *proxied) delayAnswers(d time.Duration) {
	c.mu.Lock()
	c.holdUntil = time.Now().Add(d)
	c.mu.Unlock()
}

// loseAnswers drops what the server sends on c from now on and cuts c
// after a moment, once the server has acted on what it received.
func (c *proxied) loseAnswers() {
	c.mu.Lock()
	c.deaf = true
	c.mu.Unlock()
	time.AfterFunc(50*time.Millisecond, func() {
		_ = c.client.Close()
		_ = c.server.Close()
	})
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
func (p *proxy) armCommit(fn func(c *proxied)) (disarm func()) {
	a := &arm{fn: fn}
	p.mu.Lock()
	p.armed = append(p.armed, a)
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		a.done = true
		p.mu.Unlock()
	}
}

// next takes the first armed fault that has not fired or been disarmed.
func (p *proxy) next() func(*proxied) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.armed) > 0 {
		a := p.armed[0]
		p.armed = p.armed[1:]
		if !a.done {
			a.done = true
			return a.fn
		}
	}
	return nil
}

type arm struct {
	fn   func(*proxied)
	done bool
}

var commitText = []byte("COMMIT")

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
		c := &proxied{client: client, server: server}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					var fire func(*proxied)
					if bytes.Contains(buf[:n], commitText) {
						fire = p.next()
					}
					if _, werr := server.Write(buf[:n]); werr != nil {
						break
					}
					if fire != nil {
						fire(c)
					}
				}
				if err != nil {
					break
				}
			}
			_ = server.Close()
		}()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				c.mu.Lock()
				deaf, hold := c.deaf, time.Until(c.holdUntil)
				c.mu.Unlock()
				if hold > 0 {
					time.Sleep(hold)
				}
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
