// Goroutines that are leaked (nothing can ever wake them) beside goroutines
// that are only stuck (blocked for long on something still reachable), for
// deferscope's leak-proof tests. Every leaked goroutine blocks on a
// primitive that only blocked goroutines can reach; every stuck one on a
// primitive held by a global. The program reports its goroutine IDs per
// group as JSON lines, and on Go 1.26+ built with the goroutineleak profile
// (GOEXPERIMENT=goroutineleakprofile on 1.26, default on 1.27) what Go's own
// detector finds, per blocking function.
//
// Commands on stdin: grow N (N more goroutines join the growing pool on a
// global channel), goleak (run Go's goroutineleak profile and report it),
// quit.
package main

import (
	"bufio"
	"bytes"
	"os"
	"reflect"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"deferscope.test/testutil"
)

var (
	// Stuck, never leaked: a global lock held forever, a global lifecycle
	// channel nobody closes, and a pool parked on a global channel.
	globalMu  sync.Mutex
	lifecycle = make(chan struct{})
	pool      = make(chan int)
	ids       = make(chan uint64)
)

// Each leaking goroutine makes its own channel: only its own (blocked)
// stack refers to it.
func leakSend() {
	ch := make(chan int)
	ids <- testutil.Goid()
	ch <- 1 // SITE:leak-send
}

func leakRecv() {
	ch := make(chan int)
	ids <- testutil.Goid()
	<-ch // SITE:leak-recv
}

func leakSelect() {
	a, b := make(chan int), make(chan string)
	ids <- testutil.Goid()
	select { // SITE:leak-select
	case <-a:
	case b <- "x":
	}
}

func leakNil() {
	var ch chan int
	ids <- testutil.Goid()
	ch <- 1 // SITE:leak-nil
}

// A mutex inside a larger object that only its blocked waiters hold.
type account struct {
	pad     [40]byte
	mu      sync.Mutex
	balance int
}

func leakMutex(a *account) {
	ids <- testutil.Goid()
	a.mu.Lock() // SITE:leak-mutex
	a.balance++
}

// A reader of an RWMutex write-locked by a goroutine long gone, inside an
// object only its blocked readers hold.
type registry struct {
	rw    sync.RWMutex
	names map[string]int
}

func leakRWMutex(r *registry) {
	ids <- testutil.Goid()
	r.rw.RLock() // SITE:leak-rwmutex
	_ = r.names["x"]
}

func leakWaitGroup(wg *sync.WaitGroup) {
	ids <- testutil.Goid()
	wg.Wait() // SITE:leak-wg
}

func leakCond(c *sync.Cond, wake <-chan struct{}) {
	ids <- testutil.Goid()
	// Parked in a select of 16 cases a goroutine holds 16 sudogs; woken, it
	// releases them to its P's sudog cache, and before Go 1.26 none forgets
	// it (nothing clears sudog.g). Wait takes one back; the others stay
	// cached, reachable, naming a Cond waiter (more than the goroutines
	// parked later take), and must not pass for the waiter's own sudog,
	// which only the Cond's notify list holds.
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(wake)}}
	for i := 1; i < 16; i++ {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(lifecycle)})
	}
	reflect.Select(cases)
	c.L.Lock()
	c.Wait() // SITE:leak-cond
}

// awaitParked returns once n goroutines are parked with wait reason
// reason in function fn, from the runtime's own goroutine dump.
func awaitParked(fn, reason string, n int) {
	buf := make([]byte, 1<<20)
	for {
		dump := string(buf[:runtime.Stack(buf, true)])
		parked := 0
		for _, g := range strings.Split(dump, "\n\n") {
			if strings.Contains(g, "["+reason) && strings.Contains(g, "\n"+fn+"(") {
				parked++
			}
		}
		if parked >= n {
			return
		}
		runtime.Gosched()
	}
}

func stuckMutex() {
	ids <- testutil.Goid()
	globalMu.Lock() // SITE:stuck-mutex
}

func stuckLifecycle() {
	ids <- testutil.Goid()
	<-lifecycle // SITE:stuck-lifecycle
}

func stuckPool() {
	ids <- testutil.Goid()
	pool <- 1 // SITE:stuck-pool
}

// startPool adds n goroutines to the pool, from one creation site: the
// pool is one group that grows.
func startPool(n int) []uint64 {
	for i := 0; i < n; i++ {
		go stuckPool() // SITE:pool-create
	}
	return collect(n)
}

func consumer(feed <-chan int) {
	ids <- testutil.Goid()
	for range feed {
	}
}

func collect(n int) []uint64 {
	got := make([]uint64, 0, n)
	for i := 0; i < n; i++ {
		got = append(got, <-ids)
	}
	return got
}

const (
	nSend, nRecv, nSelect, nNil = 30, 20, 10, 10
	nMutex, nWG, nCond, nRW     = 5, 6, 7, 4
	nStuckMutex, nLifecycle     = 8, 9
	nPool, nConsumers           = 4, 5
)

// spawnLeaks starts the leaking goroutines from a goroutine of its own that
// then exits, so that no live stack keeps their primitives.
func spawnLeaks(done chan<- map[string][]uint64) {
	got := map[string][]uint64{}
	start := func(name string, n int, f func()) {
		for i := 0; i < n; i++ {
			go f() // SITE:leak-create
		}
		got[name] = collect(n)
	}
	start("send", nSend, leakSend)
	start("recv", nRecv, leakRecv)
	start("select", nSelect, leakSelect)
	start("nil", nNil, leakNil)
	a := &account{}
	a.mu.Lock()
	start("mutex", nMutex, func() { leakMutex(a) })
	r := &registry{names: map[string]int{}}
	r.rw.Lock()
	start("rwmutex", nRW, func() { leakRWMutex(r) })
	wg := new(sync.WaitGroup)
	wg.Add(1)
	start("waitgroup", nWG, func() { leakWaitGroup(wg) })
	c := sync.NewCond(new(sync.Mutex))
	wake := make(chan struct{})
	start("cond", nCond, func() { leakCond(c, wake) })
	awaitParked("main.leakCond", "select", nCond)
	close(wake)
	done <- got
}

func main() {
	done := make(chan map[string][]uint64)
	go spawnLeaks(done)
	leaks := <-done

	globalMu.Lock()
	stuck := map[string][]uint64{}
	for i := 0; i < nStuckMutex; i++ {
		go stuckMutex()
	}
	stuck["mutex"] = collect(nStuckMutex)
	for i := 0; i < nLifecycle; i++ {
		go stuckLifecycle()
	}
	stuck["lifecycle"] = collect(nLifecycle)
	stuck["pool"] = startPool(nPool)

	feeds := make([]chan int, nConsumers)
	for i := range feeds {
		feeds[i] = make(chan int)
		go consumer(feeds[i])
	}
	healthy := collect(nConsumers)
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			for _, f := range feeds {
				f <- 1
			}
		}
	}()

	want := nSend + nRecv + nSelect + nNil + nMutex + nRW + nWG + nCond + nStuckMutex + nLifecycle + nPool
	for blockedCount() < want {
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	testutil.Report(map[string]any{"event": "ready", "pid": os.Getpid(), "go": runtime.Version(),
		"leaks": leaks, "stuck": stuck, "healthy": healthy, "holders": holders(),
		"goleak_profile": pprof.Lookup("goroutineleak") != nil})

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		if len(cmd) == 0 {
			continue
		}
		switch cmd[0] {
		case "grow":
			n, _ := strconv.Atoi(cmd[1])
			testutil.Report(map[string]any{"event": "grow", "goids": startPool(n)})
		case "goleak":
			testutil.Report(map[string]any{"event": "goleak", "by_function": goLeakProfile()})
		case "quit":
			testutil.Report(map[string]any{"event": "quit"})
			return
		}
	}
}

// goLeakProfile runs Go's own goroutineleak profile and counts its leaked
// goroutines by the innermost main.* function of their stacks (nil when
// the runtime has no such profile).
func goLeakProfile() map[string]int {
	p := pprof.Lookup("goroutineleak")
	if p == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := p.WriteTo(&buf, 1); err != nil {
		panic(err)
	}
	counts := map[string]int{}
	// Records: "N @ pc pc ...", then "#\tpc\tfunction+off\tfile:line" lines.
	n, counted := 0, true
	for _, line := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "@" {
			n, _ = strconv.Atoi(f[0])
			counted = false
			continue
		}
		if f := strings.Fields(line); !counted && len(f) >= 3 && f[0] == "#" && strings.HasPrefix(f[2], "main.") {
			fn := f[2][:strings.LastIndex(f[2], "+")]
			counts[fn] += n
			counted = true
		}
	}
	return counts
}

// blockedCount counts goroutines parked in this program's blocking
// functions, from the runtime's own goroutine dump.
func blockedCount() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header := strings.SplitN(g, "\n", 2)[0]
		if strings.Contains(header, "running") || strings.Contains(header, "runnable") {
			continue
		}
		for _, f := range []string{"main.leak", "main.stuck"} {
			if strings.Contains(g, f) && !strings.Contains(g, "main.consumer") {
				count++
				break
			}
		}
	}
	return count
}

// holders says, per stuck kind, which global holds its primitive: the
// global's name and address, and the channel's address (the primitive's
// heap object), or for the mutex the address of the Mutex itself (a global:
// its sema word is the primitive).
func holders() map[string]any {
	chanAt := func(c *chan int) uint64 { return uint64(*(*uintptr)(unsafe.Pointer(c))) }
	return map[string]any{
		"lifecycle": map[string]any{"global": "main.lifecycle", "addr": uint64(uintptr(unsafe.Pointer(&lifecycle))),
			"object": uint64(*(*uintptr)(unsafe.Pointer(&lifecycle)))},
		"pool": map[string]any{"global": "main.pool", "addr": uint64(uintptr(unsafe.Pointer(&pool))),
			"object": chanAt(&pool)},
		"mutex": map[string]any{"global": "main.globalMu", "addr": uint64(uintptr(unsafe.Pointer(&globalMu)))},
	}
}
