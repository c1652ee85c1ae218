// A Go program with known defer chains, driven over stdin by deferscope's
// integration tests. It reports the ground truth about itself (its goroutine
// IDs from runtime.Stack, the depths it built, runtime.NumGoroutine) as one
// JSON object per line on stdout, after each step is complete.
//
// Commands (one per line on stdin): more K, panic, goexit, goexit-go, exit N,
// exit-go, heap-return, quit.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"deferscope.test/testutil"
)

//go:noinline
func noop(int) {}

// heapWorker holds n heap-allocated records (defer in a loop → deferproc),
// adds more on command, and returns (popping everything) on a negative one.
func heapWorker(n int, id chan<- uint64, cmds <-chan int, done chan<- int) {
	id <- testutil.Goid()
	for i := 0; i < n; i++ {
		defer noop(i) // SITE:heap
	}
	done <- n
	total := n
	for k := range cmds {
		if k < 0 {
			return
		}
		for i := 0; i < k; i++ {
			defer noop(i) // SITE:heap-more
		}
		total += k
		done <- total
	}
}

// stackRec has ten defers and is not in a loop: more than eight, so the
// compiler uses stack-allocated records (deferprocStack), not open-coding.
func stackRec(level int, leaf func()) {
	defer noop(1)
	defer noop(2)
	defer noop(3)
	defer noop(4)
	defer noop(5)
	defer noop(6)
	defer noop(7)
	defer noop(8)
	defer noop(9)
	defer noop(10) // SITE:stack-top
	if level > 1 {
		stackRec(level-1, leaf)
	} else {
		leaf()
	}
}

func panicInner() {
	for i := 0; i < 5; i++ {
		defer noop(i) // SITE:panic-inner
	}
	panic("boom")
}

// panicMiddle recovers the panic raised below it: its own records and the
// inner ones are all popped, the outer ones stay.
func panicMiddle() {
	defer func() { recover() }()
	for i := 0; i < 20; i++ {
		defer noop(i) // SITE:panic-middle
	}
	panicInner()
}

func panicOuter(id chan<- uint64, hold <-chan struct{}) {
	for i := 0; i < 3; i++ {
		defer noop(i) // SITE:panic-outer
	}
	panicMiddle()
	id <- testutil.Goid()
	<-hold
}

func goexitWorker(id chan<- uint64, release <-chan struct{}, exited chan<- struct{}) {
	defer close(exited)
	for i := 0; i < 6; i++ {
		defer noop(i) // SITE:goexit
	}
	id <- testutil.Goid()
	<-release
	runtime.Goexit()
}

func exitWorker(id chan<- uint64, release <-chan struct{}, exited chan<- struct{}) {
	defer func() { exited <- struct{}{} }()
	for i := 0; i < 9; i++ {
		defer noop(i) // SITE:exit
	}
	id <- testutil.Goid()
	<-release
}

func main() {
	const heapDepth, stackLevels = 3000, 50
	heapID, heapCmds, heapDone := make(chan uint64), make(chan int), make(chan int)
	heapExited := make(chan struct{})
	go func() {
		heapWorker(heapDepth, heapID, heapCmds, heapDone)
		close(heapExited)
	}()
	heapGoid := <-heapID
	<-heapDone

	stackID, stackHold := make(chan uint64), make(chan struct{})
	go stackRec(stackLevels, func() { stackID <- testutil.Goid(); <-stackHold })
	stackGoid := <-stackID

	testutil.Report(map[string]any{"event": "ready", "pid": os.Getpid(), "go": runtime.Version(),
		"heap_goid": heapGoid, "heap_depth": heapDepth,
		"stack_goid": stackGoid, "stack_depth": stackLevels * 10})

	var goexitRelease chan struct{}
	var goexitDone chan struct{}
	var exitRelease chan struct{}
	var exitDone chan struct{}
	exitCount := 0
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		if len(cmd) == 0 {
			continue
		}
		switch cmd[0] {
		case "more":
			k, _ := strconv.Atoi(cmd[1])
			heapCmds <- k
			testutil.Report(map[string]any{"event": "more", "heap_goid": heapGoid, "heap_depth": <-heapDone})
		case "panic":
			id := make(chan uint64)
			go panicOuter(id, make(chan struct{}))
			testutil.Report(map[string]any{"event": "panic", "goid": <-id, "depth": 3})
		case "goexit":
			id := make(chan uint64)
			goexitRelease, goexitDone = make(chan struct{}), make(chan struct{})
			go goexitWorker(id, goexitRelease, goexitDone)
			testutil.Report(map[string]any{"event": "goexit", "goid": <-id, "depth": 7})
		case "goexit-go":
			close(goexitRelease)
			<-goexitDone
			testutil.Report(map[string]any{"event": "goexit-go"})
		case "exit":
			exitCount, _ = strconv.Atoi(cmd[1])
			exitRelease, exitDone = make(chan struct{}), make(chan struct{}, exitCount)
			ids := []uint64{}
			id := make(chan uint64)
			for i := 0; i < exitCount; i++ {
				go exitWorker(id, exitRelease, exitDone)
				ids = append(ids, <-id)
			}
			testutil.Report(map[string]any{"event": "exit", "goids": ids, "depth": 10})
		case "exit-go":
			close(exitRelease)
			for i := 0; i < exitCount; i++ {
				<-exitDone
			}
			testutil.Report(map[string]any{"event": "exit-go"})
		case "heap-return":
			heapCmds <- -1
			<-heapExited
			testutil.Report(map[string]any{"event": "heap-return"})
		case "quit":
			testutil.Report(map[string]any{"event": "quit"})
			return
		default:
			fmt.Fprintf(os.Stderr, "unknown command %q\n", cmd[0])
			os.Exit(2)
		}
	}
}
