// A Go program with the defer bugs deferscope's findings name, driven over
// stdin by tests/tests/diagnostics.rs. It reports the ground truth about
// itself (goroutine IDs, records it holds, its own open file descriptors)
// as one JSON object per line on stdout, after each step is complete.
//
// Commands: files N, closures N, handle N, recurse N, quit.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"deferscope.test/testutil"
)

var sink int

//go:noinline
func noop(int) {}

type conn struct{ released int }

func (c *conn) release() { c.released++ }

// openFDs counts this process's open file descriptors, less the one that
// reading /proc/self/fd opens itself.
func openFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		panic(err)
	}
	return len(entries) - 1
}

// fileLoop is the classic bug: every file's Close waits for the function
// to return, which it does not.
func fileLoop(cmds <-chan int) {
	pending := 0
	for n := range cmds {
		for i := 0; i < n; i++ {
			f, err := os.Open(os.DevNull)
			if err != nil {
				panic(err)
			}
			defer f.Close() // SITE:file-close
			pending++
		}
		testutil.Report(map[string]any{"event": "files", "goid": testutil.Goid(), "pending": pending, "open_fds": openFDs()})
	}
}

// closureLoop defers a real closure and a method value in a loop.
func closureLoop(n int, done <-chan bool) {
	c := &conn{}
	release := c.release
	for i := 0; i < n; i++ {
		defer func() { // SITE:closure
			sink += i
			sink *= 3
		}()
		defer release() // SITE:method
	}
	testutil.Report(map[string]any{"event": "closures", "goid": testutil.Goid(), "pending": 2 * n})
	<-done
}

// handle holds two heap records for ~200 ms, then returns: a bounded
// pattern, whose records live 200 ms each.
func handle() {
	for i := 0; i < 2; i++ {
		defer noop(i) // SITE:handler
	}
	time.Sleep(200 * time.Millisecond)
}

// stackRec has ten defers and is not in a loop: stack-allocated records,
// one of each site per frame.
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
	defer noop(10) // SITE:recursion
	if level > 1 {
		stackRec(level-1, leaf)
	} else {
		leaf()
	}
}

func main() {
	files := make(chan int)
	go fileLoop(files)
	done := make(chan bool)
	testutil.Report(map[string]any{"event": "ready", "pid": os.Getpid()})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		n := 0
		if len(fields) > 1 {
			n, _ = strconv.Atoi(fields[1])
		}
		switch fields[0] {
		case "files":
			files <- n
		case "closures":
			go closureLoop(n, done)
		case "handle":
			for i := 0; i < n; i++ {
				handle()
			}
			testutil.Report(map[string]any{"event": "handled", "calls": n, "records_per_call": 2})
		case "recurse":
			go stackRec(n, func() {
				testutil.Report(map[string]any{"event": "recursed", "goid": testutil.Goid(), "depth": 10 * n})
				<-done
			})
		case "quit":
			testutil.Report(map[string]any{"event": "quit"})
			return
		default:
			fmt.Fprintln(os.Stderr, "unknown command", fields[0])
		}
	}
}
