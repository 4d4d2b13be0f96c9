package rewrite

import (
	"slices"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// recordVersion is the version of the LoRA record that this peftonnx
// writes and reads.
const recordVersion = 1

// checkSite checks one site of a record read from a model against the
// model's graph: its base node still reads its weight with the recorded
// features, and A and B are initializers (not a base tensor) whose shapes
// are what the site's rank makes them. Merge and ExtractAdapter size
// their buffers from a site, so a record that a file carries is checked
// before either trusts it.
func checkSite(m *graph.Model, s Site, bases map[string]bool) error {
	where := modelLabel(m)
	if s.R < 0 || s.In <= 0 || s.Out <= 0 {
		return errorf("%s: LoRA record, site %q: rank %d with %d×%d features", where, s.Module, s.R, s.In, s.Out)
	}
	if err := checkRank(int64(s.R)); err != nil {
		return errorf("%s: LoRA record, site %q: %w", where, s.Module, err)
	}
	l, err := siteLayer(m, s) // fused_attention.go: also an Attention site
	if err != nil {
		return errorf("%s: LoRA record, %w", where, err)
	}
	if l.In != s.In || l.Out != s.Out {
		return errorf("%s: LoRA record, site %q says %d×%d features; its weight %q is %d×%d", where, s.Module, s.In, s.Out, s.Weight, l.In, l.Out)
	}
	if err := checkSiteParts(s); err != nil {
		return errorf("%s: LoRA record, site %q: %w", where, s.Module, err)
	}
	aShape, bShape := s.AShape(int64(s.R)), s.BShape(int64(s.R))
	if s.AsInputs {
		aShape, bShape, _, _ = s.inputShapes()
	}
	for _, f := range []struct {
		name  string
		shape []int64
	}{{s.A, aShape}, {s.B, bShape}} {
		if bases[f.name] {
			return errorf("%s: LoRA record, site %q: factor %q is a base tensor", where, s.Module, f.name)
		}
		t := m.Initializer(f.name)
		if t == nil {
			return errorf("%s: LoRA record, site %q: factor %q has no initializer", where, s.Module, f.name)
		}
		if !slices.Equal(t.Dims, f.shape) {
			return errorf("%s: LoRA record, site %q: factor %q is %v; rank %d on %d×%d features makes it %v", where, s.Module, f.name, t.Dims, s.R, s.In, s.Out, f.shape)
		}
	}
	return nil
}

// checkRecord checks the version of rec and every site (checkSite).
func checkRecord(m *graph.Model, rec record) error {
	if rec.Version != recordVersion {
		return errorf("%s: LoRA record (model metadata %q) has version %d; this peftonnx reads version %d", modelLabel(m), MetadataKey, rec.Version, recordVersion)
	}
	bases := map[string]bool{}
	for _, s := range rec.Sites {
		bases[s.Weight] = true
		if s.Bias != "" {
			bases[s.Bias] = true
		}
	}
	for _, s := range rec.Sites {
		if err := checkSite(m, s, bases); err != nil {
			return err
		}
	}
	return nil
}

// checkRemoval reports a node or output that would read a value no longer
// defined once removeBranches has run: a record cannot make Merge delete
// the base model's own nodes or weights.
func checkRemoval(m *graph.Model, rec record) error {
	dropNode := map[string]bool{}
	for _, name := range rec.SharedNodes {
		dropNode[name] = true
	}
	dropValue := map[string]bool{}
	renamed := map[string]string{} // Sum -> Output, for readers re-routed to the base
	for _, s := range rec.Sites {
		for _, name := range s.Nodes {
			dropNode[name] = true
		}
		for _, name := range append([]string{s.A, s.B}, s.Initializers...) {
			dropValue[name] = true
		}
		if s.BaseOutput == s.Output {
			renamed[s.Sum] = s.Output
		}
		if s.BaseInput != "" {
			renamed[s.BaseInput] = s.Input
		}
	}
	for _, name := range rec.Shared {
		dropValue[name] = true
	}
	defined := map[string]bool{"": true}
	for _, in := range m.Graph().Input {
		if !dropValue[in.Name] {
			defined[in.Name] = true
		}
	}
	for _, t := range m.Graph().Initializer {
		if !dropValue[t.Name] {
			defined[t.Name] = true
		}
	}
	base := map[string]bool{}
	for _, s := range rec.Sites {
		base[s.BaseOutput] = true
	}
	var kept []*onnxpb.NodeProto
	for _, n := range m.Graph().Node {
		if dropNode[n.Name] {
			if slices.ContainsFunc(n.Output, func(o string) bool { return base[o] }) {
				return errorf("%s: LoRA record lists node %q, the base layer of a site, as part of a branch", modelLabel(m), n.Name)
			}
			continue
		}
		kept = append(kept, n)
		for _, o := range n.Output {
			defined[o] = true
		}
	}
	for _, s := range rec.Sites {
		if s.BaseOutput != s.Output {
			defined[s.Output] = true // the base node is given its output back
		}
		if s.BaseInput == "" {
			continue
		}
		// The base node is given its input back: what it reads now must
		// be the branch's.
		if p := m.Producer(s.BaseInput); s.Input == "" || p == nil || !dropNode[p.Name] {
			return errorf("%s: LoRA record, site %q: what the base node reads, %q, is not the branch's, or the record does not say what it read before", modelLabel(m), s.Module, s.BaseInput)
		}
	}
	// An int4 DoRA site's input may be an earlier site's sum: follow the
	// chain, as long as it is.
	resolve := func(v string) string {
		for range len(renamed) {
			to, ok := renamed[v]
			if !ok {
				break
			}
			v = to
		}
		return v
	}
	for _, n := range kept {
		for _, in := range n.Input {
			if !defined[resolve(in)] {
				return errorf("%s: LoRA record lists what node %q reads (%q) as part of a branch; merging would leave it undefined", modelLabel(m), n.Name, in)
			}
		}
	}
	for _, o := range m.Graph().Output {
		if !defined[resolve(o.Name)] {
			return errorf("%s: LoRA record lists what writes graph output %q as part of a branch; merging would leave it undefined", modelLabel(m), o.Name)
		}
	}
	return nil
}

// checkSiteParts checks the parts of a fused projection: an enable list
// that splits the output features into equal parts of whole heads, or
// into the widths the site lists.
func checkSiteParts(s Site) error {
	if s.Enable == nil {
		return nil
	}
	n := int64(len(s.Enable))
	if s.Parts() == 0 {
		return errorf("enable list %v enables no part", s.Enable)
	}
	if s.Widths != nil {
		sum := int64(0)
		for _, w := range s.Widths {
			if w <= 0 {
				return errorf("part widths %v: a width must be positive", s.Widths)
			}
			sum += w
		}
		if int64(len(s.Widths)) != n || sum != s.Out {
			return errorf("part widths %v do not split %d output features into the %d parts of enable list %v", s.Widths, s.Out, n, s.Enable)
		}
		return nil
	}
	if s.Out%n != 0 || s.HeadDim <= 0 || (s.Out/n)%int64(s.HeadDim) != 0 {
		return errorf("enable list %v with head dim %d does not split %d output features", s.Enable, s.HeadDim, s.Out)
	}
	return nil
}
