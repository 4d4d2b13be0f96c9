package train_test

import (
	"fmt"

	"github.com/peftonnx/peftonnx/train"
)

func ExampleSchedule() {
	s, err := train.NewSchedule("linear", 1e-3, 2, 10)
	if err != nil {
		panic(err)
	}
	for _, step := range []int{0, 1, 2, 6, 10} {
		fmt.Printf("step %d: lr %.2g\n", step, s.LR(step))
	}
	// Output:
	// step 0: lr 0
	// step 1: lr 0.0005
	// step 2: lr 0.001
	// step 6: lr 0.0005
	// step 10: lr 0
}

func ExampleAdamW() {
	opt, err := train.NewAdamW(train.DefaultAdamW())
	if err != nil {
		panic(err)
	}
	w := train.NewParam("w", []int64{2}, []float32{1, -1})
	copy(w.Grad, []float32{0.5, -2})
	if err := opt.Step(0.1, []*train.Param{w}); err != nil {
		panic(err)
	}
	// Adam's first step moves each element by lr against its gradient's sign.
	fmt.Printf("%.4f\n", w.Data)
	// Output:
	// [0.9000 -0.9000]
}

func ExampleClipGradNorm() {
	p := train.NewParam("w", []int64{2}, []float32{0, 0})
	copy(p.Grad, []float32{3, 4})
	norm := train.ClipGradNorm([]*train.Param{p}, 1)
	fmt.Printf("norm %.1f, clipped %.4f\n", norm, p.Grad)
	// Output:
	// norm 5.0, clipped [0.6000 0.8000]
}

func ExampleCollate() {
	b := train.Collate([]train.Example{
		{InputIDs: []int64{5, 6, 7}, Labels: []int64{5, 6, 7}},
		{InputIDs: []int64{8}, Labels: []int64{8}},
	}, 0, 0, false)
	fmt.Println(b.InputIDs, b.Labels, b.AttentionMask)
	// Output:
	// [5 6 7 8 0 0] [5 6 7 8 -100 -100] [1 1 1 1 0 0]
}
