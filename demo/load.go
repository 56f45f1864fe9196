package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// load is the walkthrough's synthetic traffic: simulated users calling the
// API over HTTP, each worker owning its own accounts so that no two
// requests of one user race each other (a real user's session does one
// thing at a time) and every answer is predictable: any status other than
// the expected one is a failed request.
type load struct {
	base    string
	client  *http.Client
	workers []*worker

	requests, failures atomic.Int64
	failMu             sync.Mutex
	failed             []string
}

type worker struct {
	accounts []account
	posts    map[string][]uuid.UUID // account key -> ids of its posts
	rng      *rand.Rand
}

func newLoad(base string, accounts []account, workers int) *load {
	l := &load{
		base:   base,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}},
	}
	workers = max(1, min(workers, len(accounts)))
	for i := range workers {
		w := &worker{posts: map[string][]uuid.UUID{}, rng: rand.New(rand.NewPCG(uint64(i), 42))}
		for j := i; j < len(accounts); j += workers {
			acc := accounts[j]
			w.accounts = append(w.accounts, acc)
			for k := range 3 { // the posts seed gave every account
				w.posts[acc.Key] = append(w.posts[acc.Key], uuid.NewSHA1(acc.UserID, []byte(strconv.Itoa(k))))
			}
		}
		l.workers = append(l.workers, w)
	}
	return l
}

// start runs the workers until the returned stop is called; stop returns
// once every request in flight has finished.
func (l *load) start() (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	for _, w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				l.one(w)
			}
		}()
	}
	return func() { done.Store(true); wg.Wait() }
}

// one makes one request as a random account of w's.
func (l *load) one(w *worker) {
	acc := w.accounts[w.rng.IntN(len(w.accounts))]
	user := "/api/users/" + acc.UserID.String()
	posts := w.posts[acc.Key]
	switch n := w.rng.IntN(100); {
	case n < 30:
		l.call(acc, "GET", "/api/me", nil, http.StatusOK, nil)
	case n < 45:
		l.call(acc, "GET", user+"/posts?limit=10", nil, http.StatusOK, nil)
	case n < 60:
		var p struct{ ID uuid.UUID }
		body := map[string]string{"title": fmt.Sprintf("post %d", w.rng.IntN(1e6)), "body": "written during the walkthrough"}
		if l.call(acc, "POST", user+"/posts", body, http.StatusCreated, &p) {
			w.posts[acc.Key] = append(posts, p.ID)
		}
	case n < 70 && len(posts) > 0:
		id := posts[w.rng.IntN(len(posts))]
		l.call(acc, "PATCH", "/api/posts/"+id.String(), map[string]string{"title": fmt.Sprintf("edited %d", w.rng.IntN(1e6)), "body": "edited during the walkthrough"}, http.StatusOK, nil)
	case n < 75 && len(posts) > 1:
		i := w.rng.IntN(len(posts))
		if l.call(acc, "DELETE", "/api/posts/"+posts[i].String(), nil, http.StatusOK, nil) {
			w.posts[acc.Key] = append(posts[:i:i], posts[i+1:]...)
		}
	case n < 85:
		l.call(acc, "PATCH", user, map[string]string{"name": fmt.Sprintf("%s (%d)", acc.Name, w.rng.IntN(100)), "country": acc.Country, "plan": acc.Plan}, http.StatusOK, nil)
	case n < 93:
		l.call(acc, "POST", user+"/events", map[string]any{"kind": "login", "payload": map[string]int{"n": w.rng.IntN(100)}}, http.StatusCreated, nil)
	default:
		l.call(acc, "GET", user+"/events?limit=10", nil, http.StatusOK, nil)
	}
}

// call makes one request as acc and reports whether it got status want;
// out, when given, receives the JSON answer.
func (l *load) call(acc account, method, path string, body any, want int, out any) bool {
	l.requests.Add(1)
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, l.base+path, rd)
	if err != nil {
		l.fail(fmt.Sprintf("%s %s: %v", method, path, err))
		return false
	}
	req.Header.Set(headerUser, acc.Key)
	req.Header.Set("Content-Type", "application/json")
	res, err := l.client.Do(req)
	if err != nil {
		l.fail(fmt.Sprintf("%s %s as %s: %v", method, path, acc.Key, err))
		return false
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		l.fail(fmt.Sprintf("%s %s as %s (%s, served by %s): %d %s", method, path, acc.Key,
			res.Header.Get(headerStage), res.Header.Get(headerServed), res.StatusCode, bytes.TrimSpace(b)))
		return false
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			l.fail(fmt.Sprintf("%s %s: answer: %v", method, path, err))
			return false
		}
	}
	return true
}

func (l *load) fail(what string) {
	l.failures.Add(1)
	l.failMu.Lock()
	defer l.failMu.Unlock()
	if len(l.failed) < 5 {
		l.failed = append(l.failed, what)
	}
}

// firstFailures lists up to five failed requests.
func (l *load) firstFailures() []string {
	l.failMu.Lock()
	defer l.failMu.Unlock()
	return append([]string(nil), l.failed...)
}
