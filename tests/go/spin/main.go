// Goroutines that push and pop a defer record in a tight loop from before
// deferscope attaches, while it attaches, and after: the program of
// issue 12, whose depth deferscope once reported as a constant few hundred.
//
// The main goroutine runs `work(1)` in a loop (depth 0 or 1 at any
// instant); a second goroutine does the same on top of a chain of `deep`
// records it holds. Both stay on the CPU the whole time, so deferscope never
// sees them parked while they spin. The program reports the ground truth about
// itself (its goroutine IDs from runtime.Stack, the depths they spin between,
// runtime.NumGoroutine) as one JSON object per line on stdout.
//
// Commands on stdin: stop (both spinners stop and park, at their base depth),
// quit.
package main

import (
	"bufio"
	"os"
	"runtime"
	"strings"
	"sync/atomic"

	"deferscope.test/testutil"
)

const deep = 40

var (
	stop    atomic.Bool
	sink    atomic.Uint64
	stopped = make(chan uint64, 2)
)

//go:noinline
func noop(int) {}

// work pushes n heap records (defer in a loop → deferproc) and pops them.
//
//go:noinline
func work(n int) {
	for i := 0; i < n; i++ {
		defer noop(i) // SITE:spin
	}
	// Some work between records, so the probe rate stays bounded (~100k
	// hits/s here, well inside the ring buffer even when deferscope gets
	// little CPU next to the two spinners) while the goroutine never leaves
	// the CPU.
	x := uint64(0)
	for i := 0; i < 5000; i++ {
		x += uint64(i) * x
	}
	sink.Add(x)
}

// spin runs work(1) until told to stop.
func spin() {
	for !stop.Load() {
		work(1)
	}
}

// deepSpinner holds `deep` records below its loop.
func deepSpinner(id chan<- uint64, hold <-chan struct{}) {
	for i := 0; i < deep; i++ {
		defer noop(i) // SITE:deep
	}
	id <- testutil.Goid()
	spin()
	stopped <- testutil.Goid()
	<-hold
}

func main() {
	id, hold := make(chan uint64), make(chan struct{})
	go deepSpinner(id, hold)
	deepGoid := <-id

	// Commands are read on another goroutine: main spins.
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			switch strings.TrimSpace(in.Text()) {
			case "stop":
				stop.Store(true)
				a, b := <-stopped, <-stopped
				testutil.Report(map[string]any{"event": "stop", "parked": []uint64{a, b}})
			case "quit":
				testutil.Report(map[string]any{"event": "quit"})
				os.Exit(0)
			}
		}
		os.Exit(0)
	}()

	mainGoid := testutil.Goid()
	testutil.Report(map[string]any{"event": "ready", "pid": os.Getpid(), "go": runtime.Version(),
		"spin_goid": mainGoid, "spin_depth": 0,
		"deep_goid": deepGoid, "deep_depth": deep})
	spin()
	stopped <- mainGoid
	<-hold
}
