package train

// RNG is a small deterministic pseudo-random generator (SplitMix64). The
// package uses it instead of math/rand so that a seed gives the same
// shuffles on every Go version and platform, and so that its whole state is
// one integer that a checkpoint can store.
type RNG struct {
	state uint64
}

// NewRNG returns a generator seeded with seed.
func NewRNG(seed uint64) *RNG { return &RNG{state: seed} }

// State returns the generator's state; SetState restores it.
func (r *RNG) State() uint64 { return r.state }

// SetState restores a state returned by State.
func (r *RNG) SetState(s uint64) { r.state = s }

// Uint64 returns the next 64 random bits.
func (r *RNG) Uint64() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return mix64(r.state)
}

// mix64 is SplitMix64's output function, a bijective 64-bit mixer.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Intn returns a uniform integer in [0, n). It panics if n <= 0.
func (r *RNG) Intn(n int) int {
	if n <= 0 {
		panic("train: RNG.Intn: n <= 0")
	}
	bound := uint64(n)
	// Rejection sampling on the top of the range removes modulo bias.
	limit := -bound % bound // (2^64 - bound) mod bound
	for {
		x := r.Uint64()
		if x >= limit {
			return int(x % bound)
		}
	}
}

// Float64 returns a uniform float64 in [0, 1) with 53 random bits.
func (r *RNG) Float64() float64 {
	return float64(r.Uint64()>>11) / (1 << 53)
}

// Perm returns a random permutation of 0..n-1 (Fisher–Yates).
func (r *RNG) Perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.Intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// deriveSeed returns an independent seed for stream k of seed, such as one
// per epoch, so that stream k can be recreated without replaying the others.
func deriveSeed(seed uint64, k uint64) uint64 {
	return mix64(seed ^ mix64(k+0x632be59bd9b4e019))
}
