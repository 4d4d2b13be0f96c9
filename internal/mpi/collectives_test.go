//go:build mpi

package mpi

import (
	"errors"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCollectives runs every collective of the world on 2 and 3 ranks,
// over shared memory and over TCP on the loopback interface, and checks
// each result against the one the test computes itself.
func TestCollectives(t *testing.T) {
	if !onRank() {
		jobs := []struct {
			name string
			job  job
		}{
			{"2 ranks shared memory", job{np: 2, args: loopbackOnly}},
			{"3 ranks shared memory", job{np: 3, args: loopbackOnly}},
			{"2 ranks tcp loopback", job{np: 2, args: tcpLoopback}},
		}
		for _, j := range jobs {
			t.Run(j.name, func(t *testing.T) { j.job.pass(t, "TestCollectives") })
		}
		return
	}
	t.Run("world", testWorld)
	t.Run("allreduce float32", testAllReduceFloat32)
	t.Run("allreduce float64", testAllReduceFloat64)
	t.Run("same bits on every rank", testSameBits)
	t.Run("broadcast", testBroadcast)
	t.Run("allgather", testAllGather)
	t.Run("barrier", testBarrier)
	t.Run("errors", testErrors)
	t.Run("go panics still recover", testPanicRecovers)
}

// envInt reads an integer that mpirun put in the environment.
func envInt(t *testing.T, name string) int {
	t.Helper()
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		t.Fatalf("mpirun set no integer %s: %v", name, err)
	}
	return n
}

// testWorld checks the world's ranks against what mpirun told the process
// in its environment.
func testWorld(t *testing.T) {
	checks := []struct {
		what string
		got  int
		env  string
	}{
		{"Rank", world.Rank(), "OMPI_COMM_WORLD_RANK"},
		{"Size", world.Size(), "OMPI_COMM_WORLD_SIZE"},
		{"LocalRank", world.LocalRank(), "OMPI_COMM_WORLD_LOCAL_RANK"},
		{"LocalSize", world.LocalSize(), "OMPI_COMM_WORLD_LOCAL_SIZE"},
	}
	for _, c := range checks {
		if want := envInt(t, c.env); c.got != want {
			t.Errorf("%s: got %d, want %s=%d", c.what, c.got, c.env, want)
		}
	}
	if !Enabled {
		t.Error("Enabled: got false in the mpi build")
	}
	again, err := Init()
	if again != world || err != nil {
		t.Errorf("a second Init: got (%p, %v), want the world %p and no error", again, err, world)
	}
}

// withChunks runs fn with MPI calls limited to n elements each; every rank
// runs it at the same point, so their calls still match.
func withChunks(n int, fn func()) {
	saved := chunkElems
	chunkElems = n
	defer func() { chunkElems = saved }()
	fn()
}

// lengths are the buffer lengths the collectives are tried with: empty,
// one, odd, and larger than the chunks of the chunked runs.
var lengths = []struct {
	n, chunk int // chunk 0: the default
}{
	{n: 0}, {n: 1}, {n: 7}, {n: 1000}, {n: 100_003},
	{n: 10_000, chunk: 4096}, {n: 3 * 4096, chunk: 4096}, {n: 5, chunk: 1},
}

// inChunksOf runs fn as is for chunk 0, or with calls of chunk elements.
func inChunksOf(chunk int, fn func()) {
	if chunk == 0 {
		fn()
		return
	}
	withChunks(chunk, fn)
}

func testAllReduceFloat32(t *testing.T) {
	// Rank r holds (r+1)*(i%251+1)/4: small multiples of 1/4, whose sums
	// float32 holds exactly in any order.
	value := func(r, i int) float32 { return float32((r+1)*(i%251+1)) / 4 }
	for _, l := range lengths {
		buf := make([]float32, l.n)
		for i := range buf {
			buf[i] = value(world.Rank(), i)
		}
		var err error
		inChunksOf(l.chunk, func() { err = world.AllReduceSumFloat32(buf) })
		if err != nil {
			t.Fatalf("n=%d chunk=%d: %v", l.n, l.chunk, err)
		}
		for i, got := range buf {
			var want float32
			for r := range world.Size() {
				want += value(r, i)
			}
			if got != want {
				t.Fatalf("n=%d chunk=%d: element %d: got %v, want %v", l.n, l.chunk, i, got, want)
			}
		}
	}
}

func testAllReduceFloat64(t *testing.T) {
	value := func(r, i int) float64 { return float64(r+1)*float64(i) + 0.5*float64(r) }
	for _, l := range lengths {
		buf := make([]float64, l.n)
		for i := range buf {
			buf[i] = value(world.Rank(), i)
		}
		var err error
		inChunksOf(l.chunk, func() { err = world.AllReduceSumFloat64(buf) })
		if err != nil {
			t.Fatalf("n=%d chunk=%d: %v", l.n, l.chunk, err)
		}
		for i, got := range buf {
			var want float64
			for r := range world.Size() {
				want += value(r, i)
			}
			if got != want {
				t.Fatalf("n=%d chunk=%d: element %d: got %v, want %v", l.n, l.chunk, i, got, want)
			}
		}
	}
}

// testSameBits sums values that float32 rounds, and checks that every
// rank holds the same bits afterwards and a sum within rounding of the
// exact one: data-parallel ranks must step from identical gradients.
func testSameBits(t *testing.T) {
	const n = 4099
	value := func(r, i int) float32 { return float32(1 / float64(i+3*r+1)) }
	buf := make([]float32, n)
	for i := range buf {
		buf[i] = value(world.Rank(), i)
	}
	if err := world.AllReduceSumFloat32(buf); err != nil {
		t.Fatal(err)
	}
	for i, got := range buf {
		var want float64
		for r := range world.Size() {
			want += float64(value(r, i))
		}
		if math.Abs(float64(got)-want) > 4e-7*want {
			t.Fatalf("element %d: got %v, want %v within float32 rounding", i, got, want)
		}
	}
	root := append([]float32(nil), buf...)
	if err := world.BroadcastFloat32(root, 0); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		if math.Float32bits(buf[i]) != math.Float32bits(root[i]) {
			t.Fatalf("element %d: rank %d holds %v, rank 0 holds %v", i, world.Rank(), buf[i], root[i])
		}
	}
}

func testBroadcast(t *testing.T) {
	for _, l := range lengths {
		for root := range world.Size() {
			b := make([]byte, l.n)
			f := make([]float32, l.n)
			for i := range b {
				if world.Rank() == root {
					b[i], f[i] = byte(i*7+root), float32(i)+float32(root)/8
				} else {
					b[i], f[i] = 0xEE, -1
				}
			}
			var errB, errF error
			inChunksOf(l.chunk, func() {
				errB = world.BroadcastBytes(b, root)
				errF = world.BroadcastFloat32(f, root)
			})
			if errB != nil || errF != nil {
				t.Fatalf("n=%d chunk=%d root=%d: bytes: %v; float32: %v", l.n, l.chunk, root, errB, errF)
			}
			for i := range b {
				if wantB, wantF := byte(i*7+root), float32(i)+float32(root)/8; b[i] != wantB || f[i] != wantF {
					t.Fatalf("n=%d chunk=%d root=%d: element %d: got byte %d and float32 %v, want %d and %v", l.n, l.chunk, root, i, b[i], f[i], wantB, wantF)
				}
			}
		}
	}
}

func testAllGather(t *testing.T) {
	value := func(r, i int) float32 { return float32(r*100_000 + i) }
	for _, l := range lengths {
		send := make([]float32, l.n)
		for i := range send {
			send[i] = value(world.Rank(), i)
		}
		recv := make([]float32, world.Size()*l.n)
		var err error
		inChunksOf(l.chunk, func() { err = world.AllGatherFloat32(send, recv) })
		if err != nil {
			t.Fatalf("n=%d chunk=%d: %v", l.n, l.chunk, err)
		}
		for r := range world.Size() {
			for i := range l.n {
				if got, want := recv[r*l.n+i], value(r, i); got != want {
					t.Fatalf("n=%d chunk=%d: rank %d's element %d: got %v, want %v", l.n, l.chunk, r, i, got, want)
				}
			}
		}
	}
}

// testBarrier has rank r wait r×40ms before the barrier, and checks that
// no rank left it before the last one entered.
func testBarrier(t *testing.T) {
	time.Sleep(time.Duration(world.Rank()) * 40 * time.Millisecond)
	enter := time.Now().UnixMicro()
	if err := world.Barrier(); err != nil {
		t.Fatal(err)
	}
	leave := time.Now().UnixMicro()
	// times[r] is rank r's entry, times[size+r] its exit; the other ranks'
	// slots are zero, so the sum gathers them.
	times := make([]float64, 2*world.Size())
	times[world.Rank()], times[world.Size()+world.Rank()] = float64(enter), float64(leave)
	if err := world.AllReduceSumFloat64(times); err != nil {
		t.Fatal(err)
	}
	lastEnter := 0.0
	for r := range world.Size() {
		lastEnter = max(lastEnter, times[r])
	}
	for r := range world.Size() {
		if left := times[world.Size()+r]; left < lastEnter {
			t.Errorf("rank %d left the barrier %.0fµs before the last rank entered it", r, lastEnter-left)
		}
	}
}

// testErrors checks the errors this package returns before calling MPI,
// and one that MPI itself returns.
func testErrors(t *testing.T) {
	f := make([]float32, 4)
	checks := []struct {
		what string
		err  error
		want string
	}{
		{"root = size", world.BroadcastFloat32(f, world.Size()), "is not a rank"},
		{"negative root", world.BroadcastBytes(make([]byte, 4), -1), "is not a rank"},
		{"short recv", world.AllGatherFloat32(f, make([]float32, 3)), "recv holds 3 values"},
		{"overlapping recv", world.AllGatherFloat32(f[:1], f[:world.Size()]), "overlap"},
		{"free the world", world.Free(), "Finalize, not Free"},
	}
	for _, c := range checks {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) || !strings.HasPrefix(c.err.Error(), "mpi: ") {
			t.Errorf("%s: got %v, want an error with %q", c.what, c.err, c.want)
		}
	}
	// Past this package's checks, MPI checks the root itself; every rank
	// fails alike, so no rank waits.
	err := onThread(func() error { return world.rawBroadcastFloat32(f, world.Size()) })
	var mpiErr *Error
	if !errors.As(err, &mpiErr) || mpiErr.Call != "MPI_Bcast" || !strings.Contains(mpiErr.Text, "root") {
		t.Fatalf("MPI_Bcast to root %d: got %v, want an *Error from MPI_Bcast about the root", world.Size(), err)
	}
	t.Logf("MPI's error: %v", err)
	if err := world.Barrier(); err != nil {
		t.Errorf("a barrier after the error: %v", err)
	}
}

// testPanicRecovers checks that Go's own signal handling survived
// MPI_Init: a nil dereference is still a recoverable runtime error, not a
// crash in a handler of Open MPI's.
func testPanicRecovers(t *testing.T) {
	var got any
	func() {
		defer func() { got = recover() }()
		var p *int
		_ = *p
	}()
	if _, ok := got.(runtime.Error); !ok {
		t.Errorf("nil dereference: recovered %v, want a runtime.Error", got)
	}
}
