package combine

import (
	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
)

// UniformRank returns a copy of the LoRA adapter ad in which every module
// has ad's largest module rank, for file layouts that have no
// rank_pattern (PaddleNLP's): A gets zero columns and B zero rows, which
// change no delta, and each module's scaling is folded into B, so that
// the copy has r = lora_alpha (scaling 1), no rsLoRA and no patterns. An
// adapter whose modules all have one rank and scaling 1 comes back with
// the same values. Fused projections are refused.
func UniformRank(ad *adapter.Adapter) (*adapter.Adapter, error) {
	if ad == nil || ad.LoRA == nil {
		return nil, errorf("UniformRank needs a LoRA adapter")
	}
	if !ad.LoRA.EnableLoRAList.IsZero() {
		return nil, errorf("UniformRank: fused projections (enable_lora_list) are not supported")
	}
	if err := ad.Validate(); err != nil {
		return nil, errorf("UniformRank: %w", err)
	}
	if err := checkMatrices("UniformRank", ad); err != nil {
		return nil, err
	}
	rank := 0
	for _, w := range ad.Weights {
		rank = max(rank, int(w.A.Shape[1]))
	}
	cfg := *ad.LoRA
	cfg.R, cfg.Alpha, cfg.UseRSLoRA = rank, float64(rank), false
	cfg.RankPattern, cfg.AlphaPattern = nil, nil
	out := adapter.NewLoRA(cfg)
	for name, t := range ad.Extra {
		out.Extra[name] = t.Clone()
	}
	for _, m := range ad.Modules() {
		w := ad.Weights[m]
		a, b := fromTensor(w.A), fromTensor(w.B)
		s := ad.LoRA.ScalingFor(m)
		pa, pb := newMatrix(a.rows, rank), newMatrix(rank, b.cols)
		for i := 0; i < a.rows; i++ {
			copy(pa.data[i*rank:i*rank+a.cols], a.data[i*a.cols:(i+1)*a.cols])
		}
		for i, v := range b.data {
			pb.data[i] = s * v
		}
		out.Weights[m] = adapter.LoRAWeights{A: pa.tensor(w.A.DType.Or(dtype.Float32)), B: pb.tensor(w.B.DType.Or(dtype.Float32)), Embedding: w.Embedding}
	}
	if err := out.Validate(); err != nil {
		return nil, errorf("UniformRank: %w", err)
	}
	return out, nil
}
