package models

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"runtime"
	"sync"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
)

// The weights come from splitmix64 used as a counter-based generator: value
// k of a stream is mix64(seed + (k+1)·golden). Any element can therefore be
// computed on its own, which makes a parallel fill give exactly the values
// of a sequential one, and each tensor gets its own stream, derived from
// the model's seed and the tensor's name. A weight's values depend only on
// (seed, name, shape): adding a layer does not change the others.

const golden = 0x9e3779b97f4a7c15

// mix64 is splitmix64's output function.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// streamSeed returns the stream of the tensor called name.
func streamSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return mix64(seed ^ mix64(h.Sum64()))
}

// normalPair returns the two standard normal values at positions 2j and
// 2j+1 of stream s, by the Box-Muller transform.
func normalPair(s, j uint64) (float64, float64) {
	a := mix64(s + (2*j+1)*golden)
	b := mix64(s + (2*j+2)*golden)
	u1 := float64(a>>11+1) * 0x1p-53 // (0, 1]
	u2 := float64(b>>11) * 0x1p-53   // [0, 1)
	r := math.Sqrt(-2 * math.Log(u1))
	sin, cos := math.Sincos(2 * math.Pi * u2)
	return r * cos, r * sin
}

// fillNormal sets dst[i] = mean + std·N_i, where N_i is element off+i of
// the standard normal stream s.
func fillNormal(dst []float32, s uint64, off int, mean, std float64) {
	i := 0
	if off%2 == 1 && len(dst) > 0 {
		_, z := normalPair(s, uint64(off/2))
		dst[0] = float32(mean + std*z)
		i = 1
	}
	for ; i+1 < len(dst); i += 2 {
		z0, z1 := normalPair(s, uint64((off+i)/2))
		dst[i] = float32(mean + std*z0)
		dst[i+1] = float32(mean + std*z1)
	}
	if i < len(dst) {
		z0, _ := normalPair(s, uint64((off+i)/2))
		dst[i] = float32(mean + std*z0)
	}
}

// parallelChunk is the number of elements below which a fill stays on one
// goroutine.
const parallelChunk = 1 << 16

// parallelFor calls f on disjoint ranges [lo, hi) covering [0, n), on up to
// GOMAXPROCS goroutines.
func parallelFor(n int, f func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < 2*parallelChunk || workers < 2 {
		f(0, n)
		return
	}
	if max := n / parallelChunk; workers > max {
		workers = max
	}
	per := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// normalBytes returns n values mean + std·N(0,1) from stream s, encoded
// little-endian in dt (float32 or float16). It writes the encoding
// directly, so a large tensor is never held twice.
func normalBytes(n int, dt dtype.Type, s uint64, mean, std float64) []byte {
	es := dt.Size()
	out := make([]byte, n*es)
	parallelFor(n, func(lo, hi int) {
		var buf [512]float32
		for i := lo; i < hi; i += len(buf) {
			chunk := buf[:min(len(buf), hi-i)]
			fillNormal(chunk, s, i, mean, std)
			encodeFloats(out[i*es:], dt, chunk)
		}
	})
	return out
}

// encodeFloats writes vals into b as little-endian values of type dt.
func encodeFloats(b []byte, dt dtype.Type, vals []float32) {
	switch dt {
	case dtype.Float16:
		for i, v := range vals {
			binary.LittleEndian.PutUint16(b[2*i:], half.Float32ToFloat16(v))
		}
	default:
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
	}
}
