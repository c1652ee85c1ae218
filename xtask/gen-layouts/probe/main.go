// A minimal program whose only purpose is to carry the Go runtime's DWARF
// (runtime.g, runtime._defer, waitReason constants, ...) for gen-layouts.
package main

import "os"

func main() {
	defer os.Exit(0)
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
}
