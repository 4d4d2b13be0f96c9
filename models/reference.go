package models

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
)

// The references below compute each model's forward pass in float64 with
// plain loops, independently of ONNX: they are the specification the tests
// hold the graphs to. They favour being obviously right over being fast.

// DecoderInputs are one run's inputs to a decoder, row-major.
type DecoderInputs struct {
	Batch, Seq    int
	InputIDs      []int64 // [Batch, Seq]
	AttentionMask []int64 // [Batch, Past+Seq]; 1 for a token, 0 for padding
	PositionIDs   []int64 // [Batch, Seq]; read by LLaMA only
	// Past holds each layer's cached keys and values, each
	// [Batch, KVHeads, Past, HeadDim]; nil when there is no past.
	Past []KV
}

// KV holds one layer's keys and values, [batch, kv_heads, length, head_dim].
type KV struct {
	Key, Value []float64
}

// DecoderOutputs are what a decoder returns.
type DecoderOutputs struct {
	Logits  []float64 // [Batch, Seq, Vocab]
	Present []KV      // per layer, [Batch, KVHeads, Past+Seq, HeadDim]
}

// EncoderInputs are one run's inputs to an encoder, row-major.
type EncoderInputs struct {
	Batch, Seq    int
	InputIDs      []int64 // [Batch, Seq]
	AttentionMask []int64 // [Batch, Seq]
	TokenTypeIDs  []int64 // [Batch, Seq]; nil means all 0
}

// refWeights reads weights for a reference, keeping the first error.
type refWeights struct {
	w   Weights
	err error
}

func (r *refWeights) get(name string, shape ...int) []float32 {
	s := make([]int64, len(shape))
	for i, d := range shape {
		s[i] = int64(d)
	}
	t, err := r.w.get(name, s...)
	if err != nil && r.err == nil {
		r.err = err
	}
	return t.Data
}

// layerNorm applies the LayerNorm module (module.weight and module.bias,
// [width]) to the rows of x; nil once r has failed.
func (r *refWeights) layerNorm(x []float64, module string, rows, width int, eps float64) []float64 {
	w, b := r.get(module+".weight", width), r.get(module+".bias", width)
	if r.err != nil {
		return nil
	}
	return layerNormRef(x, rows, width, w, b, eps)
}

// checkDecoderInputs checks the sizes of in and returns the past length.
func checkDecoderInputs(family string, in DecoderInputs, layers, kvHeads, headDim, vocab int, positions bool) (int, error) {
	b, s := in.Batch, in.Seq
	if b <= 0 || s <= 0 {
		return 0, errorf("%s reference: batch %d and seq %d must be positive", family, b, s)
	}
	if len(in.InputIDs) != b*s {
		return 0, errorf("%s reference: %d input ids for [%d, %d]", family, len(in.InputIDs), b, s)
	}
	if len(in.AttentionMask)%b != 0 || len(in.AttentionMask)/b < s {
		return 0, errorf("%s reference: attention mask of %d values for batch %d and seq %d", family, len(in.AttentionMask), b, s)
	}
	past := len(in.AttentionMask)/b - s
	if positions && len(in.PositionIDs) != b*s {
		return 0, errorf("%s reference: %d position ids for [%d, %d]", family, len(in.PositionIDs), b, s)
	}
	for _, id := range in.InputIDs {
		if id < 0 || id >= int64(vocab) {
			return 0, errorf("%s reference: token id %d out of [0, %d)", family, id, vocab)
		}
	}
	if in.Past == nil {
		if past != 0 {
			return 0, errorf("%s reference: attention mask covers %d past positions but no past is given", family, past)
		}
		return 0, nil
	}
	if len(in.Past) != layers {
		return 0, errorf("%s reference: past for %d layers, want %d", family, len(in.Past), layers)
	}
	want := b * kvHeads * past * headDim
	for i, kv := range in.Past {
		if len(kv.Key) != want || len(kv.Value) != want {
			return 0, errorf("%s reference: layer %d past has %d keys and %d values, want %d each", family, i, len(kv.Key), len(kv.Value), want)
		}
	}
	return past, nil
}

// decoderRun is what the layers of one reference decoder run share: the
// inputs, their past length and total length, the causal rule of the
// attention mask, and the outputs made so far.
type decoderRun struct {
	in          DecoderInputs
	past, total int
	allowed     func(b, i, j int) bool
	keepPresent bool
	out         DecoderOutputs
}

// newDecoderRun checks in for a decoder of family (checkDecoderInputs;
// positions says whether it reads position ids), and refuses a past when
// noCache says the model has no KV cache.
func newDecoderRun(family string, in DecoderInputs, layers, kvHeads, headDim, vocab int, positions, noCache bool) (*decoderRun, error) {
	past, err := checkDecoderInputs(family, in, layers, kvHeads, headDim, vocab, positions)
	if err != nil {
		return nil, err
	}
	if noCache && in.Past != nil {
		return nil, errorf("%s reference: past given to a model without a cache", family)
	}
	total := past + in.Seq
	return &decoderRun{in: in, past: past, total: total, allowed: causalAllowed(in.AttentionMask, total, past), keepPresent: !noCache}, nil
}

// attend returns layer i's attention (attend) of the queries q over its
// keys and values: the layer's past, if any, followed by this run's k and
// v, rows [batch·seq, kvHeads·dim]. With a KV cache it keeps them as the
// layer's present.
func (r *decoderRun) attend(i int, q, k, v []float64, heads, kvHeads, dim int) []float64 {
	var past KV
	if r.in.Past != nil {
		past = r.in.Past[i]
	}
	b, s := r.in.Batch, r.in.Seq
	keys := cache(past.Key, k, b, s, r.past, kvHeads, dim)
	vals := cache(past.Value, v, b, s, r.past, kvHeads, dim)
	if r.keepPresent {
		r.out.Present = append(r.out.Present, KV{Key: keys, Value: vals})
	}
	return attend(q, keys, vals, b, s, r.total, heads, kvHeads, dim, r.allowed)
}

// matmul returns x·W for x [rows, in] and W [in, out], or x·Wᵀ for W
// [out, in] when outIn is set, plus bias [out] where bias is not nil.
func matmul(x []float64, rows, in, out int, w []float32, outIn bool, bias []float32) []float64 {
	y := make([]float64, rows*out)
	for r := range rows {
		for o := range out {
			var s float64
			for i := range in {
				if outIn {
					s += x[r*in+i] * float64(w[o*in+i])
				} else {
					s += x[r*in+i] * float64(w[i*out+o])
				}
			}
			if bias != nil {
				s += float64(bias[o])
			}
			y[r*out+o] = s
		}
	}
	return y
}

// rmsNormRef returns w · x / sqrt(mean(x²) + eps) per row.
func rmsNormRef(x []float64, rows, width int, w []float32, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := range rows {
		row := x[r*width : (r+1)*width]
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(width)+eps)
		for i, v := range row {
			y[r*width+i] = float64(w[i]) * v * inv
		}
	}
	return y
}

// layerNormRef returns (x − mean)/sqrt(var + eps)·w + b per row.
func layerNormRef(x []float64, rows, width int, w, b []float32, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := range rows {
		row := x[r*width : (r+1)*width]
		var mean, vr float64
		for _, v := range row {
			mean += v
		}
		mean /= float64(width)
		for _, v := range row {
			vr += (v - mean) * (v - mean)
		}
		vr /= float64(width)
		inv := 1 / math.Sqrt(vr+eps)
		for i, v := range row {
			y[r*width+i] = (v-mean)*inv*float64(w[i]) + float64(b[i])
		}
	}
	return y
}

// embed returns the rows of table [n, width] picked by ids.
func embed(table []float32, width int, ids []int64) []float64 {
	y := make([]float64, len(ids)*width)
	for r, id := range ids {
		for i := range width {
			y[r*width+i] = float64(table[int(id)*width+i])
		}
	}
	return y
}

// addInto adds y to x in place.
func addInto(x, y []float64) {
	for i := range x {
		x[i] += y[i]
	}
}

// cache builds a layer's keys or values, [batch, kvHeads, past+seq, dim],
// from the past (may be nil) and this run's rows [batch·seq, kvHeads·dim].
func cache(past []float64, cur []float64, batch, seq, pastLen, kvHeads, dim int) []float64 {
	total := pastLen + seq
	out := make([]float64, batch*kvHeads*total*dim)
	for b := range batch {
		for h := range kvHeads {
			for t := range total {
				for d := range dim {
					var v float64
					if t < pastLen {
						v = past[((b*kvHeads+h)*pastLen+t)*dim+d]
					} else {
						v = cur[(b*seq+t-pastLen)*kvHeads*dim+h*dim+d]
					}
					out[((b*kvHeads+h)*total+t)*dim+d] = v
				}
			}
		}
	}
	return out
}

// attend returns softmax(q·kᵀ/√dim + mask)·v as rows [batch·seq, heads·dim],
// for q rows [batch·seq, heads·dim] and k, v [batch, kvHeads, total, dim];
// query head h reads KV head h/(heads/kvHeads). allowed says whether query
// i of batch row b may see key j; a key it may not see gets lowest(float32)
// added, as the graphs do.
func attend(q, k, v []float64, batch, seq, total, heads, kvHeads, dim int, allowed func(b, i, j int) bool) []float64 {
	out := make([]float64, batch*seq*heads*dim)
	scale := 1 / math.Sqrt(float64(dim))
	scores := make([]float64, total)
	rep := heads / kvHeads
	for b := range batch {
		for h := range heads {
			kvh := h / rep
			for i := range seq {
				qrow := q[(b*seq+i)*heads*dim+h*dim:][:dim]
				mx := math.Inf(-1)
				for j := range total {
					krow := k[((b*kvHeads+kvh)*total+j)*dim:][:dim]
					var s float64
					for d := range dim {
						s += qrow[d] * krow[d]
					}
					s *= scale
					if !allowed(b, i, j) {
						s += lowest(dtype.Float32)
					}
					scores[j] = s
					mx = max(mx, s)
				}
				var sum float64
				for j := range total {
					scores[j] = math.Exp(scores[j] - mx)
					sum += scores[j]
				}
				o := out[(b*seq+i)*heads*dim+h*dim:][:dim]
				for j := range total {
					p := scores[j] / sum
					vrow := v[((b*kvHeads+kvh)*total+j)*dim:][:dim]
					for d := range dim {
						o[d] += p * vrow[d]
					}
				}
			}
		}
	}
	return out
}

// causalAllowed returns the decoder rule: query i (at absolute position
// past+i) sees key j when j ≤ past+i and the mask keeps j.
func causalAllowed(mask []int64, total, past int) func(b, i, j int) bool {
	return func(b, i, j int) bool {
		return j <= past+i && mask[b*total+j] != 0
	}
}
