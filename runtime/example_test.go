package runtime_test

import (
	"fmt"
	"log"

	rt "github.com/peftonnx/peftonnx/runtime"
)

// The model is ONNX Runtime's "adapters as inputs" test model: a MatMul
// whose LoRA A and B are optional inputs. Run it as the base model, then
// with a rank-1 adapter fed per run, on one session.
func ExampleSession_Run() {
	s, err := rt.NewSession("../../shared/models/lora-inputs-ort/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for _, in := range s.Inputs() {
		fmt.Println("input:", in, "optional:", in.Optional)
	}

	input, _ := rt.NewFloat32([]int64{4, 4}, []float32{
		1, 0, 0, 0,
		0, 1, 0, 0,
		0, 0, 1, 0,
		0, 0, 0, 1,
	})
	out, err := s.Run(map[string]*rt.Tensor{"input": input}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("base:", out["output"], out["output"].Float32()[:4])

	a, _ := rt.NewFloat32([]int64{4, 1}, []float32{1, 0, 0, 0})
	b, _ := rt.NewFloat32([]int64{1, 4}, []float32{10, 10, 10, 10})
	out, err = s.Run(map[string]*rt.Tensor{"input": input, "lora_param_a": a, "lora_param_b": b}, []string{"output"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("adapted:", out["output"].Float32()[:4])
	// Output:
	// input: input float32[4 4] optional: false
	// input: lora_param_a float32[4 dim] optional: true
	// input: lora_param_b float32[dim 4] optional: true
	// base: float32[4 4] [1 2 3 4]
	// adapted: [11 12 13 14]
}

// A training loop binds its tensors once, changes their data in place
// between steps, and reads outputs that are updated in place.
func ExampleSession_Bind() {
	s, err := rt.NewSession("../../shared/models/lora-inputs-ort/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	input, _ := rt.NewFloat32([]int64{4, 4}, []float32{
		1, 0, 0, 0,
		0, 1, 0, 0,
		0, 0, 1, 0,
		0, 0, 0, 1,
	})
	a, _ := rt.NewFloat32([]int64{4, 1}, []float32{1, 0, 0, 0})
	b, _ := rt.NewFloat32([]int64{1, 4}, []float32{0, 0, 0, 0})
	bind, err := s.Bind(map[string]*rt.Tensor{"input": input, "lora_param_a": a, "lora_param_b": b}, []string{"output"})
	if err != nil {
		log.Fatal(err)
	}
	defer bind.Close()
	for step := range 3 {
		b.Float32()[0] = float32(step) // an optimizer step, in place
		out, err := bind.Run()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(step, out["output"].Float32()[0])
	}
	// Output:
	// 0 1
	// 1 2
	// 2 3
}
