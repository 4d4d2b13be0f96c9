package serve

import (
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// slotTable is which LoRA adapter each slot of the stacked factors holds,
// for the rows of the batch: slot 0 is the base (zeros), slots 1 to
// MaxLoRAs hold one adapter each while a row uses it. The stacked inputs
// are rebuilt only when a slot changes hands.
type slotTable struct {
	entries []*entry // by slot; [0] is always nil
	users   []int    // rows on each slot
	feeds   map[string]*rt.Tensor
	stale   bool
}

func newSlotTable(maxLoRAs int) *slotTable {
	return &slotTable{entries: make([]*entry, maxLoRAs+1), users: make([]int, maxLoRAs+1), stale: true}
}

// take returns the slot for a row on a (0 for nil or a prefix adapter):
// the one a holds already, else a free one, else -1 when every slot is
// held by another adapter's rows.
func (t *slotTable) take(a *entry) int {
	if a == nil || a.kind != KindLoRA {
		t.users[0]++
		return 0
	}
	free := -1
	for k := 1; k < len(t.entries); k++ {
		if t.entries[k] == a {
			t.users[k]++
			return k
		}
		if free < 0 && t.users[k] == 0 {
			free = k
		}
	}
	if free < 0 {
		return -1
	}
	if t.entries[free] != a {
		t.entries[free] = a
		t.stale = true
	}
	t.users[free]++
	return free
}

// put gives back a row's slot. The slot keeps its adapter until another
// takes it.
func (t *slotTable) put(slot int) {
	if slot >= 0 {
		t.users[slot]--
	}
}

// inputs returns the stacked factor inputs for the slots as they are: per
// site A [K, in, R] and B [K, R, out], R the largest rank of a slot's
// adapter on that module (at least 1), and on a DoRA engine the gain
// G [K, 1, out]; zeros (and a gain of one) where a slot's adapter does not
// change the module or is free, a gain of one where it is plain LoRA.
func (t *slotTable) inputs(st *rewrite.Stacked) (map[string]*rt.Tensor, error) {
	if !t.stale {
		return t.feeds, nil
	}
	k := len(t.entries)
	factors := make([]map[string]rewrite.StackedFactor, k)
	for s := 1; s < k; s++ {
		if a := t.entries[s]; a != nil && t.users[s] > 0 {
			a.mu.Lock()
			factors[s] = a.factors // pinned by its rows: not evicted
			a.mu.Unlock()
		}
	}
	feeds := make(map[string]*rt.Tensor, 3*len(st.Sites))
	for _, site := range st.Sites {
		r := 1
		for _, f := range factors {
			r = max(r, f[site.Module].R)
		}
		in, out := int(site.In), int(site.Out)
		a := make([]float32, k*in*r)
		b := make([]float32, k*r*out)
		var g []float32
		if site.Gain != "" {
			g = make([]float32, k*out)
			for i := range g {
				g[i] = 1
			}
		}
		for s, fs := range factors {
			f, ok := fs[site.Module]
			if !ok {
				continue
			}
			for i := range in {
				copy(a[(s*in+i)*r:], f.A[i*f.R:(i+1)*f.R])
			}
			copy(b[s*r*out:], f.B) // [R, out] rows; rank rows beyond f.R stay zero
			if g != nil && f.Gain != nil {
				copy(g[s*out:], f.Gain)
			}
		}
		if g != nil {
			tg, err := rt.NewFloat32([]int64{int64(k), 1, int64(out)}, g)
			if err != nil {
				return nil, err
			}
			feeds[site.Gain] = tg
		}
		ta, err := rt.NewFloat32([]int64{int64(k), int64(in), int64(r)}, a)
		if err != nil {
			return nil, err
		}
		tb, err := rt.NewFloat32([]int64{int64(k), int64(r), int64(out)}, b)
		if err != nil {
			return nil, err
		}
		feeds[site.A], feeds[site.B] = ta, tb
	}
	t.feeds, t.stale = feeds, false
	return feeds, nil
}
