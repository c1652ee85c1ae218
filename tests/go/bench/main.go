// Workloads for `cargo xtask bench`: defer-heavy and goroutine-churn loops
// whose throughput is measured with and without deferscope attached.
//
// It prints "ready pid=<PID>", then for each stdin command "<workload>
// <seconds>" runs that workload for that long on all CPUs and prints one JSON
// line with the operations per second it achieved; "park <N>" adds N
// goroutines parked on a channel with two heap defers each (for the tracer's
// own cost at scale) and prints {"parked": <total>}.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

//go:noinline
func noop(int) {}

// heapDefers does 16 heap-allocated defers (defer in a loop).
//
//go:noinline
func heapDefers() {
	for i := 0; i < 16; i++ {
		defer noop(i)
	}
}

// stackDefers has ten defers outside loops: stack-allocated records.
//
//go:noinline
func stackDefers() {
	defer noop(1)
	defer noop(2)
	defer noop(3)
	defer noop(4)
	defer noop(5)
	defer noop(6)
	defer noop(7)
	defer noop(8)
	defer noop(9)
	defer noop(10)
}

// openDefers uses open-coded defers, which never reach the runtime: the
// cost of tracing them must be zero.
//
//go:noinline
func openDefers() {
	defer noop(1)
	defer noop(2)
}

func churn() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { wg.Done() }()
	wg.Wait()
}

var workloads = map[string]struct {
	op      func()
	perCall int // operations per call
}{
	"heap-defers":  {heapDefers, 16},
	"stack-defers": {stackDefers, 10},
	"open-defers":  {openDefers, 2},
	"goroutines":   {churn, 1},
}

func run(name string, d time.Duration) (float64, error) {
	w, ok := workloads[name]
	if !ok {
		return 0, fmt.Errorf("unknown workload %q", name)
	}
	var calls atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for p := 0; p < runtime.GOMAXPROCS(0); p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := int64(0)
			for !stop.Load() {
				for i := 0; i < 64; i++ {
					w.op()
				}
				n += 64
			}
			calls.Add(n)
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return float64(calls.Load()) * float64(w.perCall) / time.Since(start).Seconds(), nil
}

var (
	parkedTotal int
	never       = make(chan struct{})
)

//go:noinline
func parked(ready *sync.WaitGroup) {
	for i := 0; i < 2; i++ {
		defer noop(i)
	}
	ready.Done()
	<-never
}

func park(n int) int {
	var ready sync.WaitGroup
	ready.Add(n)
	for i := 0; i < n; i++ {
		go parked(&ready)
	}
	ready.Wait()
	return n
}

func main() {
	fmt.Printf("ready pid=%d\n", os.Getpid())
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 2 {
			continue
		}
		if f[0] == "park" {
			n, _ := strconv.Atoi(f[1])
			parkedTotal += park(n)
			out.Encode(map[string]any{"parked": parkedTotal})
			continue
		}
		secs, _ := strconv.ParseFloat(f[1], 64)
		rate, err := run(f[0], time.Duration(secs*float64(time.Second)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		out.Encode(map[string]any{"workload": f[0], "ops_per_s": rate})
	}
}
