// One of several Go programs traced at once by one deferscope (--all,
// --exe), each with numbers of its own. Usage: fleet DEPTH STUCK.
//
//   - one goroutine holds DEPTH heap defer records and sleeps;
//   - STUCK goroutines block forever receiving from a channel nobody
//     writes ("chan receive").
//
// It prints one JSON "ready" line once everything is in place (with
// runtime.NumGoroutine()), then waits for stdin to close.
package main

import (
	"encoding/json"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"

	"deferscope.test/testutil"
)

//go:noinline
func noop(int) {}

func receiver(never <-chan int, started chan<- struct{}) {
	started <- struct{}{}
	<-never // BLOCK:recv
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
	if len(os.Args) != 3 {
		panic("usage: fleet DEPTH STUCK")
	}
	depth, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	stuck, err := strconv.Atoi(os.Args[2])
	if err != nil {
		panic(err)
	}
	started := make(chan struct{})
	never := make(chan int)
	for i := 0; i < stuck; i++ {
		go receiver(never, started)
	}
	for i := 0; i < stuck; i++ {
		<-started
	}
	id := make(chan uint64)
	go deep(depth, id)
	deepGoid := <-id

	ready := map[string]any{
		"event": "ready", "pid": os.Getpid(), "go": runtime.Version(),
		"deep_goid": deepGoid, "deep_depth": depth, "stuck": stuck,
		"num_goroutine": runtime.NumGoroutine(),
	}
	if err := json.NewEncoder(os.Stdout).Encode(ready); err != nil {
		panic(err)
	}
	// Until the test closes stdin (or kills us).
	io.Copy(io.Discard, os.Stdin)
}
