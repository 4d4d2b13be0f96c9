package quant

import (
	"runtime"
	"sync"
)

// parallelFor calls f on disjoint ranges [lo, hi) that cover [0, n), on
// up to GOMAXPROCS goroutines, and returns when all have returned.
func parallelFor(n int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range workers {
		lo, hi := i*n/workers, (i+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}
