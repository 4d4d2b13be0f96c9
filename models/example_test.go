package models_test

import (
	"fmt"

	"github.com/peftonnx/peftonnx/models"
)

func ExampleLlama() {
	c := models.LlamaTiny()
	m, err := models.Llama(c)
	if err != nil {
		panic(err)
	}
	q := m.NodeByName("/model/layers.0/self_attn/q_proj/MatMul")
	fmt.Println(q.OpType, q.Input[1])
	fmt.Println("parameters:", c.NumParams())
	for _, in := range m.Graph().Input[:4] {
		fmt.Println("input:", in.Name)
	}
	fmt.Println("output:", m.Graph().Output[0].Name)
	// Output:
	// MatMul model.layers.0.self_attn.q_proj.weight
	// parameters: 6480
	// input: input_ids
	// input: attention_mask
	// input: position_ids
	// input: past_key_values.0.key
	// output: logits
}

func ExampleWeightsOf() {
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		panic(err)
	}
	w, err := models.WeightsOf(m)
	if err != nil {
		panic(err)
	}
	fmt.Println(w["transformer.h.0.attn.c_attn.weight"].Shape)
	fmt.Println(len(w), "weights,", w.NumParams(), "values")
	// Output:
	// [16 48]
	// 29 weights, 7056 values
}
