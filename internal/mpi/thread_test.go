package mpi

import (
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestLockedThreadRunsEveryCallOnOneThread(t *testing.T) {
	th := startLockedThread()
	defer th.stop()
	var want int
	th.do(func() { want = syscall.Gettid() })
	if want == syscall.Gettid() {
		t.Fatalf("the locked thread is the test's own thread %d", want)
	}
	const goroutines, callsEach = 8, 50
	tids := make([][]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range callsEach {
				var tid int
				th.do(func() { tid = syscall.Gettid() })
				tids[g] = append(tids[g], tid)
			}
		}()
	}
	wg.Wait()
	for g, got := range tids {
		if len(got) != callsEach {
			t.Errorf("goroutine %d: got %d calls, want %d", g, len(got), callsEach)
		}
		for i, tid := range got {
			if tid != want {
				t.Errorf("goroutine %d call %d ran on thread %d, want %d", g, i, tid, want)
			}
		}
	}
}

func TestLockedThreadRunsCallsOneAtATime(t *testing.T) {
	th := startLockedThread()
	defer th.stop()
	var mu sync.Mutex
	inside, most := 0, 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			th.do(func() {
				mu.Lock()
				inside++
				most = max(most, inside)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("got %d calls running at once, want 1", most)
	}
}

func TestLockedThreadTryDo(t *testing.T) {
	th := startLockedThread()
	defer th.stop()
	ran := false
	if !th.tryDo(func() { ran = true }, time.Second) || !ran {
		t.Fatalf("tryDo on an idle thread: got ran=%v, want the call run", ran)
	}
	release := make(chan struct{})
	busy := make(chan struct{})
	go th.do(func() { close(busy); <-release })
	<-busy
	ran = false
	start := time.Now()
	if th.tryDo(func() { ran = true }, 20*time.Millisecond) || ran {
		t.Errorf("tryDo on a busy thread: got ran=%v, want it refused", ran)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("tryDo on a busy thread waited %v, want about 20ms", waited)
	}
	close(release)
}
