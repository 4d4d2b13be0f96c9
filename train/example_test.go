package train_test

import (
	"context"
	"fmt"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train"
	"github.com/peftonnx/peftonnx/train/autodiff"
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

// ExampleNewSession is the loop that Trainer runs, written out: a loss on
// the adapted model, its gradient graph, one ONNX Runtime session over it
// (frozen weights read in place from the model's external data file), and
// AdamW on the parameters in Go. (It needs ONNX Runtime and a model file,
// so it is not run as a test.)
func ExampleNewSession() {
	m, err := graph.Load("model.onnx")
	if err != nil {
		panic(err)
	}
	defer m.Close()
	_, sum, err := rewrite.InjectLoRA(m, adapter.DefaultLoRAConfig(".*q_proj", ".*v_proj"))
	if err != nil {
		panic(err)
	}
	loss, err := train.CausalLMLoss(m, "logits") // adds the int64 input "labels"
	if err != nil {
		panic(err)
	}
	g, err := autodiff.Build(m, loss, sum.LoRA) // the factors become inputs
	if err != nil {
		panic(err)
	}
	s, err := train.NewSession(g, rt.WithIntraOpThreads(2))
	if err != nil {
		panic(err)
	}
	defer s.Close()

	ids := []int64{1, 5, 9, 3, 7, 2, 8, 4}
	in := map[string]*rt.Tensor{}
	for _, name := range []string{"input_ids", train.LabelsInput} {
		if in[name], err = rt.NewInt64([]int64{1, 8}, ids); err != nil {
			panic(err)
		}
	}
	if in["attention_mask"], err = rt.NewInt64([]int64{1, 8}, []int64{1, 1, 1, 1, 1, 1, 1, 1}); err != nil {
		panic(err)
	}
	if in["position_ids"], err = rt.NewInt64([]int64{1, 8}, []int64{0, 1, 2, 3, 4, 5, 6, 7}); err != nil {
		panic(err)
	}
	var params []*train.Param
	outs := []string{loss}
	for _, name := range sum.LoRA {
		vals, err := m.Float32s(m.Initializer(name))
		if err != nil {
			panic(err)
		}
		p := train.NewParam(name, m.Initializer(name).Dims, vals)
		if in[name], err = rt.NewFloat32(p.Shape, p.Data); err != nil { // shares p.Data
			panic(err)
		}
		params = append(params, p)
		outs = append(outs, autodiff.GradName(name))
	}
	b, err := s.Bind(in, outs)
	if err != nil {
		panic(err)
	}
	opt, err := train.NewAdamW(train.DefaultAdamW())
	if err != nil {
		panic(err)
	}
	for step := range 10 {
		out, err := b.Run()
		if err != nil {
			panic(err)
		}
		for i, p := range params {
			p.Grad = out[outs[i+1]].Float32()
		}
		train.ClipGradNorm(params, 1)
		if err := opt.Step(1e-3, params); err != nil { // updates the bound inputs in place
			panic(err)
		}
		fmt.Printf("step %d loss %.4f\n", step+1, out[loss].Float32()[0])
	}
}
