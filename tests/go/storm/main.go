// A defer storm for deferscope's overhead-governor test: a goroutine that
// runs heap defers in a loop as fast as it can, beside a parked goroutine
// with a known chain. Driven over stdin, it reports ground truth as one JSON
// line per step on stdout.
//
// Commands: storm-on, storm-off, more K (K more records on the parked
// goroutine), rate (storm defers per second over the last second), quit.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"deferscope.test/testutil"
)

//go:noinline
func noop(int) {}

var stormed atomic.Uint64

// burst pushes and pops 64 heap records (defer in a loop: deferproc).
//
//go:noinline
func burst() {
	for i := 0; i < 64; i++ {
		defer noop(i) // SITE:storm
	}
}

func storm(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		for i := 0; i < 16; i++ {
			burst()
		}
		stormed.Add(16 * 64)
	}
}

// holder keeps n heap records pushed at start, and k more per command.
func holder(n int, id chan<- uint64, cmds <-chan int, done chan<- int) {
	id <- testutil.Goid()
	for i := 0; i < n; i++ {
		defer noop(i) // SITE:held
	}
	done <- n
	total := n
	for k := range cmds {
		for i := 0; i < k; i++ {
			defer noop(i) // SITE:held-more
		}
		total += k
		done <- total
	}
}

// rate measures storm defers per second over one second.
func rate() float64 {
	before, t0 := stormed.Load(), time.Now()
	time.Sleep(time.Second)
	return float64(stormed.Load()-before) / time.Since(t0).Seconds()
}

func main() {
	id := make(chan uint64)
	cmds := make(chan int)
	done := make(chan int)
	go holder(300, id, cmds, done)
	goid := <-id
	depth := <-done
	testutil.Report(map[string]any{"event": "ready", "holder_goid": goid, "holder_depth": depth})

	var stop chan struct{}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "storm-on":
			stop = make(chan struct{})
			go storm(stop)
			testutil.Report(map[string]any{"event": "storm-on"})
		case "storm-off":
			close(stop)
			testutil.Report(map[string]any{"event": "storm-off"})
		case "more":
			k, _ := strconv.Atoi(f[1])
			cmds <- k
			depth = <-done
			testutil.Report(map[string]any{"event": "more", "holder_depth": depth})
		case "rate":
			testutil.Report(map[string]any{"event": "rate", "defers_per_s": rate()})
		case "quit":
			return
		default:
			fmt.Fprintf(os.Stderr, "unknown command %q\n", f[0])
		}
	}
}
