// Leaked goroutines next to healthy ones, for deferscope's leak-detection
// tests. Before anything is traced it starts goroutines leaked on a channel
// send, on a receive from a channel nobody writes, and on a mutex held
// forever, beside busy workers, sleepers and consumers fed every 100 ms. It
// reports its goroutine IDs (from runtime.Stack) and runtime.NumGoroutine()
// as JSON lines on stdout, after each step is complete.
//
// Commands on stdin: leak-nil N (N more goroutines leak, sending on a nil
// channel), unblock-recv (close the channel the receivers wait on; they
// exit), quit.
package main

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"deferscope.test/testutil"
)

// started collects goroutine IDs; each goroutine sends its ID just before
// blocking, so once all IDs are in, all are (about to be) blocked.
func collect(n int, ids <-chan uint64) []uint64 {
	got := make([]uint64, 0, n)
	for i := 0; i < n; i++ {
		got = append(got, <-ids)
	}
	return got
}

func sender(ids chan<- uint64, ch chan<- int) {
	ids <- testutil.Goid()
	ch <- 1 // SITE:send-block
}

func receiver(ids chan<- uint64, ch <-chan int, done *sync.WaitGroup) {
	defer done.Done()
	ids <- testutil.Goid()
	<-ch // SITE:recv-block
}

func locker(ids chan<- uint64, mu *sync.Mutex) {
	ids <- testutil.Goid()
	mu.Lock() // SITE:mutex-block
}

func nilSender(ids chan<- uint64) {
	var ch chan int
	ids <- testutil.Goid()
	ch <- 1 // SITE:nil-block
}

func busy(ids chan<- uint64, stop <-chan struct{}) {
	ids <- testutil.Goid()
	x := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		for i := 0; i < 100000; i++ {
			x += i
		}
		time.Sleep(time.Millisecond)
	}
}

func sleeper(ids chan<- uint64) {
	ids <- testutil.Goid()
	time.Sleep(time.Hour)
}

func consumer(ids chan<- uint64, feed <-chan int) {
	ids <- testutil.Goid()
	for range feed { // SITE:consumer-block
	}
}

func main() {
	const nSend, nRecv, nMutex, nBusy, nSleep, nConsumers = 300, 200, 100, 4, 20, 10
	ids := make(chan uint64)

	sendCh := make(chan int)
	for i := 0; i < nSend; i++ {
		go sender(ids, sendCh) // SITE:send-create
	}
	senders := collect(nSend, ids)

	recvCh := make(chan int)
	var recvDone sync.WaitGroup
	recvDone.Add(nRecv)
	for i := 0; i < nRecv; i++ {
		go receiver(ids, recvCh, &recvDone) // SITE:recv-create
	}
	receivers := collect(nRecv, ids)

	var mu sync.Mutex
	mu.Lock()
	for i := 0; i < nMutex; i++ {
		go locker(ids, &mu) // SITE:mutex-create
	}
	lockers := collect(nMutex, ids)

	stop := make(chan struct{})
	var healthy []uint64
	for i := 0; i < nBusy; i++ {
		go busy(ids, stop)
	}
	healthy = append(healthy, collect(nBusy, ids)...)
	for i := 0; i < nSleep; i++ {
		go sleeper(ids)
	}
	healthy = append(healthy, collect(nSleep, ids)...)
	feeds := make([]chan int, nConsumers)
	for i := range feeds {
		feeds[i] = make(chan int)
		go consumer(ids, feeds[i])
	}
	healthy = append(healthy, collect(nConsumers, ids)...)
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			for _, f := range feeds {
				f <- 1
			}
		}
	}()

	// Every leaked goroutine has sent its ID; wait until the runtime shows
	// them parked, so NumGoroutine and the states are settled.
	for blockedCount() < nSend+nRecv+nMutex {
		time.Sleep(time.Millisecond)
	}
	testutil.Report(map[string]any{"event": "ready", "pid": os.Getpid(), "go": runtime.Version(),
		"senders": senders, "receivers": receivers, "lockers": lockers, "healthy": healthy})

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		if len(cmd) == 0 {
			continue
		}
		switch cmd[0] {
		case "leak-nil":
			n, _ := strconv.Atoi(cmd[1])
			for i := 0; i < n; i++ {
				go nilSender(ids) // SITE:nil-create
			}
			testutil.Report(map[string]any{"event": "leak-nil", "goids": collect(n, ids)})
		case "unblock-recv":
			close(recvCh)
			recvDone.Wait()
			testutil.Report(map[string]any{"event": "unblock-recv"})
		case "quit":
			close(stop)
			testutil.Report(map[string]any{"event": "quit"})
			return
		}
	}
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
		if strings.Contains(g, "main.sender(") || strings.Contains(g, "main.receiver(") || strings.Contains(g, "main.locker(") {
			if strings.Contains(g, "[chan send") || strings.Contains(g, "[chan receive") || strings.Contains(g, "[sync.Mutex.Lock") || strings.Contains(g, "[semacquire") {
				count++
			}
		}
	}
	return count
}
