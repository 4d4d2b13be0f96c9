package demo

import (
	"math"
	"strings"

	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
	"github.com/peftonnx/peftonnx/train"
)

// evalInputs takes the first n eval sequences as a [n, seq] batch.
func evalInputs(d *train.Dataset, n int) [][]int64 {
	var ids [][]int64
	for _, ex := range d.Examples[:n] {
		ids = append(ids, ex.InputIDs)
	}
	return ids
}

// logits runs a decoder on a batch with an empty KV cache.
func logits(m *graph.Model, ids [][]int64, opts []rt.Option) (*rt.Tensor, error) {
	s, err := session.OpenModel(m, session.WithRuntime(opts...))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	batch, seq := int64(len(ids)), int64(len(ids[0]))
	flat := make([]int64, 0, batch*seq)
	mask := make([]int64, 0, batch*seq)
	pos := make([]int64, 0, batch*seq)
	for _, row := range ids {
		for j, id := range row {
			flat = append(flat, id)
			mask = append(mask, 1)
			pos = append(pos, int64(j))
		}
	}
	feeds := map[string]*rt.Tensor{}
	for _, in := range s.Inputs() {
		var t *rt.Tensor
		switch {
		case in.Name == "input_ids":
			t, err = rt.NewInt64([]int64{batch, seq}, flat)
		case in.Name == "attention_mask":
			t, err = rt.NewInt64([]int64{batch, seq}, mask)
		case in.Name == "position_ids":
			t, err = rt.NewInt64([]int64{batch, seq}, pos)
		case strings.HasPrefix(in.Name, "past_key_values."):
			t, err = rt.Zeros(in.DType, []int64{batch, in.Shape[1], 0, in.Shape[3]})
		default:
			continue // optional inputs with defaults
		}
		if err != nil {
			return nil, err
		}
		feeds[in.Name] = t
	}
	out, err := s.Run(feeds, []string{"logits"})
	if err != nil {
		return nil, err
	}
	return out["logits"], nil
}

// accuracy is the share of positions (all but the last of each row) where
// the argmax of the logits is the task's successor token.
func accuracy(logits *rt.Tensor, ids [][]int64, period int64) float64 {
	v := logits.ToFloat32()
	shape := logits.Shape()
	vocab := int(shape[2])
	hit, total := 0, 0
	for i, row := range ids {
		for j := 0; j+1 < len(row); j++ {
			off := (i*len(row) + j) * vocab
			best := 0
			for k := 1; k < vocab; k++ {
				if v[off+k] > v[off+best] {
					best = k
				}
			}
			if int64(best) == successor(row[j], period) {
				hit++
			}
			total++
		}
	}
	return float64(hit) / float64(total)
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

func maxAbs(a []float32) float64 {
	d := 0.0
	for _, x := range a {
		d = math.Max(d, math.Abs(float64(x)))
	}
	return d
}
