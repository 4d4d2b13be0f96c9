package train_test

import (
	"context"
	"fmt"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
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

// ExampleTrainer trains the LoRA adapter of a small decoder and saves it
// as a HuggingFace PEFT directory. (It needs ONNX Runtime, so it is not run
// as a test.)
func ExampleTrainer() {
	m, err := models.Llama(models.LlamaMini())
	if err != nil {
		panic(err)
	}
	_, sum, err := rewrite.InjectLoRA(m, adapter.DefaultLoRAConfig(".*q_proj", ".*v_proj"))
	if err != nil {
		panic(err)
	}
	data, err := train.LoadJSONL("train.jsonl", nil) // {"input_ids": [...]} per line
	if err != nil {
		panic(err)
	}
	opts := train.DefaultOptions()
	opts.Steps, opts.LR = 100, 1e-3
	opts.OnStep = func(r train.StepResult) { fmt.Printf("step %d loss %.4f\n", r.Step, r.Loss) }
	tr, err := train.NewTrainer(m, sum.Trainable(), data, opts)
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	if err := tr.Train(context.Background()); err != nil {
		panic(err)
	}
	trained, err := tr.Model() // every frozen tensor as it was
	if err != nil {
		panic(err)
	}
	ad, err := rewrite.ExtractAdapter(trained)
	if err != nil {
		panic(err)
	}
	if err := adapter.SaveDir("my-adapter", ad); err != nil {
		panic(err)
	}
}
