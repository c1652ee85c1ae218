// A Go program for deferscope's dashboard test: one goroutine with a known
// deep defer chain, a known group of leaked goroutines, and a little healthy
// traffic. It prints one JSON line with the ground truth (goroutine IDs from
// runtime.Stack, depths, counts) once everything is in place, then runs
// until stdin closes.
package main

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"time"

	"deferscope.test/testutil"
)

const (
	deepDepth = 2500
	leakCount = 40
)

//go:noinline
func noop(int) {}

// deepWorker holds deepDepth heap defer records (defer in a loop) and then
// naps forever: sleeping is not blocking on a primitive, so it is deep but
// not leaked.
func deepWorker(id chan<- uint64) {
	for i := 0; i < deepDepth; i++ {
		defer noop(i) // SITE:deep
	}
	id <- testutil.Goid()
	for {
		time.Sleep(50 * time.Millisecond)
	}
}

// leakyProducer reports its ID, then blocks forever sending on a channel
// nobody reads.
func leakyProducer(ids chan<- uint64, result chan<- int) {
	ids <- testutil.Goid()
	result <- 42 // SITE:leak-block
}

// healthy pushes and pops a few defers all the time.
func healthy() {
	for {
		func() {
			for i := 0; i < 3; i++ {
				defer noop(i) // SITE:healthy
			}
		}()
		time.Sleep(10 * time.Millisecond)
	}
}

func main() {
	deepID := make(chan uint64)
	go deepWorker(deepID)
	deep := <-deepID

	ids := make(chan uint64, leakCount)
	result := make(chan int) // unbuffered, never read
	leaked := make([]uint64, 0, leakCount)
	for i := 0; i < leakCount; i++ {
		go leakyProducer(ids, result) // SITE:leak-create
	}
	for i := 0; i < leakCount; i++ {
		leaked = append(leaked, <-ids)
	}
	go healthy()

	ready := map[string]any{
		"event": "ready", "pid": os.Getpid(), "go": runtime.Version(),
		"deep_goid": deep, "deep_depth": deepDepth,
		"leak_goids": leaked, "leak_count": leakCount,
		"num_goroutine": runtime.NumGoroutine(),
	}
	if err := json.NewEncoder(os.Stdout).Encode(ready); err != nil {
		panic(err)
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
	}
}
