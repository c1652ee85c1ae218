// Package testutil is what every Go program traced by deferscope's tests
// uses to report ground truth about itself.
package testutil

import (
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Goid returns the current goroutine's ID, parsed from its own stack trace
// header ("goroutine 18 [running]:"): the ID deferscope must report.
func Goid() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, err := strconv.ParseUint(strings.Fields(string(buf))[1], 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

var out = json.NewEncoder(os.Stdout)

// Report prints one JSON line on stdout with the program's own
// runtime.NumGoroutine() added, once a test step is complete.
func Report(v map[string]any) {
	v["num_goroutine"] = runtime.NumGoroutine()
	if err := out.Encode(v); err != nil {
		panic(err)
	}
}
