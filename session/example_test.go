package session_test

import (
	"fmt"

	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// ExampleOpen runs a base model with a saved adapter applied in memory (or
// fed, where the model takes its LoRA factors as inputs). (It needs ONNX
// Runtime and the files, so it is not run as a test.)
func ExampleOpen() {
	s, err := session.Open("model.onnx",
		session.WithAdapterFile("my-adapter"),
		session.WithRuntime(rt.WithIntraOpThreads(2)))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ids, err := rt.NewInt64([]int64{1, 3}, []int64{1, 5, 9})
	if err != nil {
		panic(err)
	}
	in := map[string]*rt.Tensor{"input_ids": ids}
	for name, t := range s.Feeds { // the adapter's factors, if fed
		in[name] = t
	}
	out, err := s.Run(in, []string{"logits"})
	if err != nil {
		panic(err)
	}
	fmt.Println(out["logits"].Shape(), s.Prefix != nil)
}
