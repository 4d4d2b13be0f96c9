package main

import (
	"math"
	"testing"
)

// handSpec is a model small enough to count by hand: hidden 8, 2 layers,
// 2 heads of 4 over 1 KV head, MLP 16, vocabulary 10; batch 2 × 4 tokens,
// LoRA r=2 on q and v.
func handSpec() Spec {
	return Spec{
		Model: ModelSpec{VocabSize: 10, Hidden: 8, Layers: 2, Heads: 2, KVHeads: 1, Intermediate: 16},
		LoRA:  LoRASpec{R: 2, Alpha: 4, Targets: []string{"q_proj", "v_proj"}},
		Batch: 2, Seq: 4,
	}
}

func TestStepWorkByHand(t *testing.T) {
	// 8 tokens. Per layer the weights hold q 8·8, k 8·4, v 8·4, o 8·8,
	// gate, up and down 8·16 each: 576; two layers and the head's 8·10:
	// 1232, times 2·8 flops per weight element.
	forward := 2.0 * 8 * 1232
	// Q·Kᵀ and P·V: 2·4·4·4 each, per row (2), head (2) and layer (2).
	attention := 2.0 * (2 * 4 * 4 * 4) * 2 * 2 * 2
	// x·A (8×8·8×2) and (xA)·B (8×2·2×out), for q (out 8) and v (out 4),
	// in both layers.
	adapters := 2.0 * 2 * (8*8*2 + 8*2*8 + 8*8*2 + 8*2*4)
	// Input gradients: every linear of layer 1 and the head; in layer 0
	// q, k and v read the normalized embedding, which trains nothing.
	inputGrads := 2.0 * 8 * (576 + (576 - 64 - 32 - 32) + 80)
	attnGrads := 2 * attention
	// dB = (xA)ᵀ·dy (2×8·8×out), d(xA) = dy·Bᵀ (8×out·out×2), dA = xᵀ·d(xA)
	// (8×8·8×2) in both layers; dx = d(xA)·Aᵀ (8×2·2×8) in layer 1 only.
	adapterGrads := 2.0*2*(2*8*8+8*8*2+8*8*2) + 2.0*2*(2*8*4+8*4*2+8*8*2) + 2*2*(8*2*8)
	lora := stepWork(handSpec(), modeTrainLoRA, 2)
	parts := partFlops(lora)
	for _, p := range []struct {
		part string
		want float64
	}{
		{partForward, forward}, {partAttention, attention}, {partAdapter, adapters},
		{partInputGrads, inputGrads}, {partAttnGrads, attnGrads}, {partAdapterGrads, adapterGrads},
	} {
		if parts[p.part] != p.want {
			t.Errorf("LoRA step, %s: got %v flops, want %v", p.part, parts[p.part], p.want)
		}
	}
	if got, want := totalFlops(lora), forward+attention+adapters+inputGrads+attnGrads+adapterGrads; got != want {
		t.Errorf("LoRA step: got %v flops, want %v", got, want)
	}
	for _, mode := range []string{modeForwardBase, modeForwardMerged, modeForwardInt4, modeForwardInt4Merged} {
		if got, want := totalFlops(stepWork(handSpec(), mode, 1)), 2.0*4*1232+attention/2; got != want {
			t.Errorf("%s at batch 1: got %v flops, want %v", mode, got, want)
		}
	}
	for _, mode := range []string{modeTrainLoRALowMem, modeTrainQLoRA} {
		if got := totalFlops(stepWork(handSpec(), mode, 2)); got != totalFlops(lora) {
			t.Errorf("%s: got %v flops, want the LoRA step's %v", mode, got, totalFlops(lora))
		}
	}
	// Full fine-tuning: every input gradient (the embedding trains) and
	// every weight gradient, one forward's worth.
	full := partFlops(stepWork(handSpec(), modeTrainFull, 2))
	if full[partInputGrads] != forward || full[partWeightGrads] != forward || full[partAdapter] != 0 {
		t.Errorf("full fine-tuning: got input gradients %v, weight gradients %v, adapters %v; want %v, %v, 0",
			full[partInputGrads], full[partWeightGrads], full[partAdapter], forward, forward)
	}
}

// The issue that asked for the yardstick counted the LoRA step of the
// 181M model at about 596 GFLOP: forward linears 291.7, attention 4.8,
// input gradients 289.6, attention gradients 9.7 (adapters apart).
func TestStepWorkBase(t *testing.T) {
	s, err := newSpec("base", 8, 128, 1)
	if err != nil {
		t.Fatal(err)
	}
	parts := partFlops(stepWork(s, modeTrainLoRA, 8))
	for part, want := range map[string]float64{partForward: 291.7, partAttention: 4.8, partInputGrads: 289.6, partAttnGrads: 9.7} {
		if got := parts[part] / 1e9; math.Abs(got-want) > 0.06 {
			t.Errorf("%s: got %.2f GFLOP, want %.1f", part, got, want)
		}
	}
}

func TestShapeLimit(t *testing.T) {
	work := []gemm{
		{Part: partForward, M: 10, K: 2, N: 5, Count: 1, Linear: true},     // 200 flops at its shape's rate
		{Part: partAttention, M: 10, K: 5, N: 2, Count: 2},                 // at the reference rate
		{Part: partWeightGrads, M: 2, K: 10, N: 5, Count: 1, Linear: true}, // at the reference rate
	}
	// Rates in GFLOP/s: 2e-7 GFLOP at 2e-6, then 4e-7 and 2e-7 at 1e-6.
	sec, ok := shapeLimit(work, 1e-6, map[string]float64{"2x5": 2e-6})
	if want := 0.1 + 0.4 + 0.2; !ok || math.Abs(sec-want) > 1e-12 {
		t.Errorf("got %v s (ok %v), want %v", sec, ok, want)
	}
	if _, ok := shapeLimit(work, 1e-6, nil); ok {
		t.Error("a linear shape without a rate gave a limit")
	}
}
