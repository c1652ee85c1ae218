// Defers inside range-over-func loop bodies (Go 1.23+), for deferscope's
// tests. The runtime keeps them on a per-loop header record until the
// enclosing function returns; deferscope counts the deferred calls, not the
// header. The program reports its goroutine ID and the number of pending
// deferred calls as JSON lines on stdout.
//
// Commands on stdin: start (a goroutine runs the loop and blocks in it),
// release (it finishes and exits), quit.
package main

import (
	"bufio"
	"encoding/json"
	"iter"
	"os"
	"runtime"
	"strings"

	"deferscope.test/testutil"
)

//go:noinline
func noop(int) {}

func count(n int) iter.Seq[int] {
	return func(yield func(int) bool) {
		for i := 0; i < n; i++ {
			if !yield(i) {
				return
			}
		}
	}
}

// loop defers once per iteration of a range-over-func loop, then blocks
// inside the last iteration's body with all of them pending.
func loop(n int, id chan<- uint64, hold <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for i := range count(n) {
		defer noop(i) // SITE:rangefunc
		if i == n-1 {
			id <- testutil.Goid()
			<-hold
		}
	}
}

func main() {
	out := json.NewEncoder(os.Stdout)
	const n = 40
	var hold, done chan struct{}
	out.Encode(map[string]any{"event": "ready", "pid": os.Getpid(), "go": runtime.Version()})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch strings.TrimSpace(in.Text()) {
		case "start":
			id := make(chan uint64)
			hold, done = make(chan struct{}), make(chan struct{})
			go loop(n, id, hold, done)
			// The n loop-body records plus loop's own `defer close(done)`.
			out.Encode(map[string]any{"event": "start", "goid": <-id, "depth": n + 1, "loop_defers": n})
		case "release":
			close(hold)
			<-done
			out.Encode(map[string]any{"event": "release"})
		case "quit":
			out.Encode(map[string]any{"event": "quit"})
			return
		}
	}
}
