package adapter

// This file splits a prefix-tuning table among tensor-parallel ranks by
// key/value heads, as PaddleNLP's prefix tuning shards its past key
// values: each rank's attention holds whole KV heads, so it needs the
// prefix keys and values of those heads alone.

// splitPrefix returns the prefix adapter a as the degree shards of
// SplitTensorParallel: shard k's Prompt is [P, L·2·(kv/degree)·D], the
// table's columns of KV heads k·kv/degree … (k+1)·kv/degree − 1, in the
// table's own order (layer, key then value, head, head dim), so that it
// is the table of a model with the rank's kv/degree heads.
func splitPrefix(a *Adapter, degree int) ([]*Adapter, error) {
	c := a.Prefix
	switch {
	case c.PrefixProjection:
		return nil, errorf("tensor-parallel shards: a prefix with a projection (prefix_projection) has no shard layout here")
	case a.Prompt == nil || len(a.Prompt.Shape) != 2:
		return nil, errorf("tensor-parallel shards: the prefix has no 2-D prompt table")
	case c.KVHeads()%degree != 0:
		return nil, errorf("tensor-parallel shards: degree %d does not divide the prefix's %d key/value heads", degree, c.KVHeads())
	}
	P, L, kv, d := int(a.Prompt.Shape[0]), c.NumHiddenLayers, c.KVHeads(), c.HeadDim()
	if int(a.Prompt.Shape[1]) != L*2*kv*d {
		return nil, errorf("tensor-parallel shards: the prompt table is %v, its config says [%d, %d]", a.Prompt.Shape, P, L*2*kv*d)
	}
	per := kv / degree
	cfg := *c
	cfg.TensorParallelDegree = degree
	shards := make([]*Adapter, degree)
	for k := range shards {
		data := make([]float32, 0, P*L*2*per*d)
		for p := range P {
			row := a.Prompt.Data[p*L*2*kv*d : (p+1)*L*2*kv*d]
			for lk := range 2 * L { // layer, key then value
				lo := (lk*kv + k*per) * d
				data = append(data, row[lo:lo+per*d]...)
			}
		}
		shards[k] = NewPrefix(cfg)
		shards[k].Prompt = &Tensor{DType: a.Prompt.DType, Shape: []int64{int64(P), int64(L * 2 * per * d)}, Data: data}
	}
	return shards, nil
}

// mergePrefix undoes splitPrefix, bit for bit.
func mergePrefix(shards []*Adapter) (*Adapter, error) {
	degree := len(shards)
	c := *shards[0].Prefix
	P, L, kv, d := 0, c.NumHiddenLayers, c.KVHeads(), c.HeadDim()
	if kv%degree != 0 {
		return nil, errorf("tensor-parallel shards: %d ranks do not divide the prefix's %d key/value heads", degree, kv)
	}
	per := kv / degree
	for k, s := range shards {
		if s.Prefix == nil || s.Prompt == nil || len(s.Prompt.Shape) != 2 || int(s.Prompt.Shape[1]) != L*2*per*d || s.Prompt.Shape[0] != shards[0].Prompt.Shape[0] {
			return nil, errorf("tensor-parallel shards: rank %d holds no prompt table of [%v, %d]", k, shards[0].Prompt.Shape[0], L*2*per*d)
		}
		P = int(s.Prompt.Shape[0])
	}
	c.TensorParallelDegree = -1
	a := NewPrefix(c)
	data := make([]float32, P*L*2*kv*d)
	for k, s := range shards {
		for p := range P {
			row := s.Prompt.Data[p*L*2*per*d : (p+1)*L*2*per*d]
			for lk := range 2 * L {
				copy(data[p*L*2*kv*d+(lk*kv+k*per)*d:], row[lk*per*d:(lk+1)*per*d])
			}
		}
	}
	a.Prompt = &Tensor{DType: shards[0].Prompt.DType, Shape: []int64{int64(P), int64(L * 2 * kv * d)}, Data: data}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}
