package train

import (
	"fmt"

	"github.com/peftonnx/peftonnx/train/autodiff"
)

// Products says whether a training step's backward pass keeps the
// products of activations with frozen weights that it reads (an MLP's
// gate and up projections, the largest values it keeps) from the forward
// pass, or computes them again.
type Products int

const (
	// ProductsAuto, the default, recomputes the products of frozen int4
	// layers (com.microsoft MatMulNBits) and keeps the float ones. On an
	// int4 base the frozen weights are a fraction of a step's memory and
	// the kept activations most of it: QLoRA recipes checkpoint by
	// default for that reason (HF PEFT's prepare_model_for_kbit_training
	// turns gradient checkpointing on). On the GPT-2-small-sized LLaMA at
	// 8×128 it is about 0.3 GB less at peak, for about a sixth more time
	// per step; a float base's step is unchanged.
	ProductsAuto Products = iota
	// ProductsKept keeps every product from the forward pass: the fastest
	// step.
	ProductsKept
	// ProductsRecomputed recomputes the float products too: on a float
	// base about 0.3 GB less at 8×128, for about a quarter more time.
	ProductsRecomputed
)

// String names p as the CLI and the errors do.
func (p Products) String() string {
	switch p {
	case ProductsAuto:
		return "auto"
	case ProductsKept:
		return "kept"
	case ProductsRecomputed:
		return "recomputed"
	}
	return fmt.Sprintf("Products(%d)", int(p))
}

// check reports a value that is none of the constants.
func (p Products) check() error {
	if p < ProductsAuto || p > ProductsRecomputed {
		return errorf("RecomputeProducts %v: want ProductsAuto, ProductsKept or ProductsRecomputed", p)
	}
	return nil
}

// options returns the autodiff options that p stands for.
func (p Products) options() []autodiff.Option {
	return []autodiff.Option{
		autodiff.WithRecomputeInt4Products(p == ProductsAuto),
		autodiff.WithRecomputeProducts(p == ProductsRecomputed),
	}
}
