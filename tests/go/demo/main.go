// The demo workload for `cargo xtask demo`: a small HTTP service on loopback
// under synthetic load from its own clients, with two classic bugs that
// deferscope makes visible:
//
//   - a defer-in-loop in a long-lived batch worker: every item defers its
//     cleanup to the end of the function, which never comes, so the defer
//     chain grows into the thousands;
//   - a goroutine leak in /search: the handler gives up after a timeout, but
//     the goroutine computing the result blocks forever sending it on an
//     unbuffered channel nobody reads.
//
// Healthy traffic (/healthz, /orders with per-request defers) runs beside
// them. It prints "ready pid=<PID> addr=<ADDR>" once it serves.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// resource holds a real file, so a pile of pending Close defers shows up
// as open file descriptors.
type resource struct {
	id int
	f  *os.File
}

func (r *resource) Close() {
	if r.f != nil {
		r.f.Close()
	}
}

func open(id int) *resource {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return &resource{id: id}
	}
	return &resource{id: id, f: f}
}

// batchWorker has the defer-in-loop bug: Close runs only when the function
// returns, and it never does.
func batchWorker(items <-chan int) {
	for id := range items {
		r := open(id)
		defer r.Close() // BUG: deferred to the end of batchWorker, not of the iteration
		_ = r.id
	}
}

var ordersMu sync.Mutex
var orders int

func handleOrders(w http.ResponseWriter, _ *http.Request) {
	ordersMu.Lock()
	defer ordersMu.Unlock()
	for i := 0; i < 3; i++ {
		r := open(i)
		defer r.Close() // fine: the handler returns soon
	}
	orders++
	fmt.Fprintf(w, "orders=%d\n", orders)
}

func slowLookup(query string) string {
	time.Sleep(50 * time.Millisecond)
	return "result for " + query
}

// handleSearch leaks one goroutine per timed-out request.
func handleSearch(w http.ResponseWriter, r *http.Request) {
	result := make(chan string) // BUG: unbuffered; nobody reads after a timeout
	go func() {
		result <- slowLookup(r.URL.Query().Get("q"))
	}()
	select {
	case res := <-result:
		io.WriteString(w, res)
	case <-time.After(10 * time.Millisecond):
		http.Error(w, "timeout", http.StatusGatewayTimeout)
	}
}

func client(base, path string, every time.Duration) {
	c := &http.Client{Timeout: 2 * time.Second}
	for range time.Tick(every) {
		resp, err := c.Get(base + path)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func main() {
	batchRate := flag.Duration("batch-every", 20*time.Millisecond, "one batch item per interval")
	leakRate := flag.Duration("leak-every", 500*time.Millisecond, "one leaking /search request per interval")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/orders", handleOrders)
	mux.HandleFunc("/search", handleSearch)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(ln, mux)

	items := make(chan int)
	go batchWorker(items)
	go func() {
		for i := 0; ; i++ {
			items <- i
			time.Sleep(*batchRate)
		}
	}()

	base := "http://" + ln.Addr().String()
	go client(base, "/healthz", 100*time.Millisecond)
	go client(base, "/orders", 50*time.Millisecond)
	go client(base, "/search?q=deferscope", *leakRate)

	fmt.Printf("ready pid=%d addr=%s\n", os.Getpid(), ln.Addr())
	select {}
}
