// Replaces main.go of Go's goroutine leak corpus
// (runtime/testdata/testgoroutineleakprofile and its goker/ directory) for
// `cargo xtask bench leaks`: runs one program as Go's own test does, then
// keeps the process alive so that deferscope can attach to it.
//
// Protocol on stdout, after whatever the program itself prints:
//
//	deferscope-corpus: profile begin
//	<Go's goroutineleak profile, debug=2>
//	deferscope-corpus: profile end
//	deferscope-corpus: ready pid=<pid>
//
// Each line "profile" on stdin prints the profile again (between the same
// markers); end of stdin exits.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/pprof"
)

// The number of times the main (profiling) goroutine should yield
// in order to allow the leaking goroutines to get stuck.
const yieldCount = 10

var cmds = map[string]func(){}

func register(name string, f func()) {
	if cmds[name] != nil {
		panic("duplicate registration: " + name)
	}
	cmds[name] = f
}

func registerInit(name string, f func()) {
	if len(os.Args) >= 2 && os.Args[1] == name {
		f()
	}
}

// Before Go 1.26, or built without GOEXPERIMENT=goroutineleakprofile, the
// runtime has no goroutineleak profile: an empty one of that name keeps the
// programs' pprof.Lookup("goroutineleak").WriteTo calls working. A package
// variable, so that it exists before any init function runs a program.
var leakProfileIsGos = ensureLeakProfile()

func ensureLeakProfile() bool {
	if pprof.Lookup("goroutineleak") != nil {
		return true
	}
	pprof.NewProfile("goroutineleak")
	return false
}

func writeProfile() {
	fmt.Println("deferscope-corpus: profile begin")
	if leakProfileIsGos {
		pprof.Lookup("goroutineleak").WriteTo(os.Stdout, 2)
	}
	fmt.Println("deferscope-corpus: profile end")
}

func main() {
	if len(os.Args) < 2 {
		println("usage: " + os.Args[0] + " name-of-test")
		os.Exit(2)
	}
	f := cmds[os.Args[1]]
	if f == nil {
		println("unknown function: " + os.Args[1])
		os.Exit(2)
	}
	f()
	writeProfile()
	fmt.Printf("deferscope-corpus: ready pid=%d go_profile=%t\n", os.Getpid(), leakProfileIsGos)
	stdin := bufio.NewScanner(os.Stdin)
	for stdin.Scan() {
		if stdin.Text() == "profile" {
			writeProfile()
		}
	}
}
