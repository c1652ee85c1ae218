// A small JSON HTTP service and its load generator, for `cargo xtask bench`:
// what tracing costs a busy server.
//
//	httpbench serve           listen on 127.0.0.1 (a free port); print "ready pid=<PID> addr=<ADDR>"
//	httpbench load ADDR N S   N keep-alive clients for S seconds; print {"requests_per_s": R}
//
// Loopback only. The service keeps a mutex-guarded map and answers with
// encoding/json: per request, net/http pushes and pops stack defers and
// starts (and ends) a background-read goroutine.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type store struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *store) handle(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Key string `json:"key"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.m[req.Key]++
	n := s.m[req.Key]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"key": req.Key, "count": n})
}

func serve() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := &store{m: map[string]int{}}
	fmt.Printf("ready pid=%d addr=%s\n", os.Getpid(), ln.Addr())
	http.Serve(ln, http.HandlerFunc(s.handle))
}

func load(addr string, clients int, secs float64) {
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	client := &http.Client{Transport: transport}
	url := "http://" + addr + "/count"
	var done atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			body := []byte(fmt.Sprintf(`{"key":"k%d"}`, c%4))
			for !stop.Load() {
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done.Add(1)
			}
		}(c)
	}
	time.Sleep(time.Duration(secs * float64(time.Second)))
	stop.Store(true)
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(map[string]any{"requests_per_s": float64(done.Load()) / time.Since(start).Seconds()})
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "serve" {
		serve()
		return
	}
	if len(os.Args) == 5 && os.Args[1] == "load" {
		clients, _ := strconv.Atoi(os.Args[3])
		secs, _ := strconv.ParseFloat(os.Args[4], 64)
		load(os.Args[2], clients, secs)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: httpbench serve | httpbench load ADDR CLIENTS SECONDS")
	os.Exit(2)
}
