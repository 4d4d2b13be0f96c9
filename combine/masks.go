package combine

import (
	"hash/fnv"
	"math/rand/v2"
)

// maskSource decides, value after value, whether DARE keeps a value.
type maskSource interface {
	keep(density float64) bool
}

// pcgMask is the documented source: math/rand/v2's PCG seeded with the
// seed and the FNV-1a 64-bit hash of the module name; a value is kept when
// Float64() < density, as torch.bernoulli(density) keeps it with
// probability density.
type pcgMask struct{ r *rand.Rand }

func newPCGMask(seed uint64, module string) *pcgMask {
	h := fnv.New64a()
	h.Write([]byte(module))
	return &pcgMask{r: rand.New(rand.NewPCG(seed, h.Sum64()))}
}

func (p *pcgMask) keep(density float64) bool { return p.r.Float64() < density }
