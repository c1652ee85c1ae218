// A Go program with a known number of leaked goroutines and a known deep
// defer chain, for deferscope's Prometheus exporter test. It prints one JSON
// "ready" line once everything is in place, then waits for stdin to close.
//
//   - leakRecv goroutines block forever receiving from a channel nobody
//     writes ("chan receive");
//   - leakSend goroutines block forever sending on an unbuffered channel
//     nobody reads ("chan send");
//   - one goroutine holds deepDepth heap defer records and sleeps (a sleep is
//     not a leak), so the deepest chain is known exactly.
package main

import (
	"encoding/json"
	"io"
	"os"
	"runtime"
	"time"

	"deferscope.test/testutil"
)

const (
	leakRecv  = 25
	leakSend  = 10
	deepDepth = 1200
)

//go:noinline
func noop(int) {}

func receiver(never <-chan int, started chan<- struct{}) {
	started <- struct{}{}
	<-never // BLOCK:recv
}

func sender(nobody chan<- int, started chan<- struct{}) {
	started <- struct{}{}
	nobody <- 1 // BLOCK:send
}

// deep holds n heap-allocated records (defer in a loop → deferproc) and
// never returns.
func deep(n int, id chan<- uint64) {
	for i := 0; i < n; i++ {
		defer noop(i) // SITE:deep
	}
	id <- testutil.Goid()
	for {
		time.Sleep(time.Hour)
	}
}

func main() {
	started := make(chan struct{})
	never := make(chan int)
	for i := 0; i < leakRecv; i++ {
		go receiver(never, started) // GO:recv
	}
	nobody := make(chan int)
	for i := 0; i < leakSend; i++ {
		go sender(nobody, started) // GO:send
	}
	for i := 0; i < leakRecv+leakSend; i++ {
		<-started
	}
	id := make(chan uint64)
	go deep(deepDepth, id)
	deepGoid := <-id

	ready := map[string]any{
		"event": "ready", "pid": os.Getpid(), "go": runtime.Version(),
		"leaked": leakRecv + leakSend, "leaked_recv": leakRecv, "leaked_send": leakSend,
		"deep_goid": deepGoid, "deep_depth": deepDepth,
		"num_goroutine": runtime.NumGoroutine(),
	}
	if err := json.NewEncoder(os.Stdout).Encode(ready); err != nil {
		panic(err)
	}
	// Until the test closes stdin (or kills us).
	io.Copy(io.Discard, os.Stdin)
}
