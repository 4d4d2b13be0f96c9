//go:build mpi

package mpi

import (
	"flag"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkAllReduceFloat32 measures in-place all-reduce sums of a few
// sizes. It runs only on ranks, since every rank must take part:
//
//	make bench-mpi
//
// builds the test binary and starts it under mpirun. Every rank must run
// the same number of iterations, so the benchmark wants a fixed count
// (-test.benchtime=<n>x). It reports MB/s of the buffer and busMB/s, the
// bytes each rank sends and receives for a ring all-reduce
// (2(size-1)/size of the buffer), which compares across rank counts.
func BenchmarkAllReduceFloat32(b *testing.B) {
	if !onRank() {
		b.Skip("runs under mpirun only: make bench-mpi")
	}
	if bt := flag.Lookup("test.benchtime").Value.String(); !strings.HasSuffix(bt, "x") {
		b.Fatalf("-test.benchtime=%s: want a count such as 20x, so that every rank runs as many all-reduces", bt)
	}
	for _, n := range []int{1 << 10, 1 << 16, 1 << 20, 1 << 24} {
		b.Run(fmt.Sprintf("%dKiB", 4*n>>10), func(b *testing.B) {
			buf := make([]float32, n)
			for i := range buf {
				buf[i] = 1
			}
			if err := world.Barrier(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(4 * n))
			b.ResetTimer()
			for range b.N {
				if err := world.AllReduceSumFloat32(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			size := float64(world.Size())
			busBytes := 2 * (size - 1) / size * float64(4*n) * float64(b.N)
			b.ReportMetric(busBytes/1e6/b.Elapsed().Seconds(), "busMB/s")
		})
	}
}
