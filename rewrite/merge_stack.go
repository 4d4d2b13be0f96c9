package rewrite

import "github.com/peftonnx/peftonnx/graph"

// mergeStack is what a merge keeps in model metadata under one key, for
// Unmerge: an entry per weight it merged, in the order of the merges. A
// weight merged twice has two entries; Unmerge takes the latest. Version
// 1 is the only layout. DoRA's norms (DoRAMetadataKey) and the updates'
// fingerprints (MergeMetadataKey) are two such stacks.
type mergeStack[E mergeEntry] struct {
	Version int `json:"version"`
	Merges  []E `json:"merges"`
}

// mergeEntry is an entry of a mergeStack, which names its weight.
type mergeEntry interface{ weight() string }

// mergedWeight is what every mergeEntry starts with: the weight
// initializer merged into and the adapter module merged.
type mergedWeight struct {
	Weight string `json:"weight"`
	Module string `json:"module"`
}

func (w mergedWeight) weight() string { return w.Weight }

// readMergeStack returns the stack at key in m's metadata, empty when m
// has no entry there.
func readMergeStack[E mergeEntry](m *graph.Model, key string) (mergeStack[E], error) {
	var rec mergeStack[E]
	ok, err := readMetadataJSON(m, key, &rec)
	if err != nil || !ok {
		return mergeStack[E]{}, err
	}
	if rec.Version != 1 {
		return mergeStack[E]{}, errorf("%s: model metadata %q has version %d; this peftonnx reads version 1", modelLabel(m), key, rec.Version)
	}
	return rec, nil
}

// write stores rec at key in m's metadata, or removes the entry when rec
// has no merges.
func (rec mergeStack[E]) write(m *graph.Model, key string) error {
	if len(rec.Merges) == 0 {
		m.DeleteMetadata(key)
		return nil
	}
	rec.Version = 1
	return writeMetadataJSON(m, key, rec)
}

// pushMerges appends entries to the stack at key in m's metadata.
func pushMerges[E mergeEntry](m *graph.Model, key string, entries []E) error {
	if len(entries) == 0 {
		return nil
	}
	rec, err := readMergeStack[E](m, key)
	if err != nil {
		return err
	}
	rec.Merges = append(rec.Merges, entries...)
	return rec.write(m, key)
}

// latest returns the index in rec of the latest merge of weight, or -1.
func (rec mergeStack[E]) latest(weight string) int {
	for i := len(rec.Merges) - 1; i >= 0; i-- {
		if rec.Merges[i].weight() == weight {
			return i
		}
	}
	return -1
}
