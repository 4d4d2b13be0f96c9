package adapter_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/peftonnx/peftonnx/adapter"
)

// Example builds a LoRA adapter in graph layout, saves it as a HuggingFace
// PEFT directory and loads it back.
func Example() {
	cfg := adapter.DefaultLoRAConfig(`.*q_proj`)
	cfg.R, cfg.Alpha = 2, 4
	a := adapter.NewLoRA(cfg)
	a.Weights["model.layers.0.self_attn.q_proj"] = adapter.LoRAWeights{
		A: adapter.NewTensor([]int64{3, 2}, []float32{1, 2, 3, 4, 5, 6}), // [in, r]
		B: adapter.Zeros(2, 4),                                           // [r, out]
	}

	dir, err := os.MkdirTemp("", "lora")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := adapter.SaveDir(dir, a); err != nil {
		log.Fatal(err)
	}
	st, _, err := adapter.ReadSafetensors(filepath.Join(dir, adapter.HFWeightsFile))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("in the file, lora_A is", st["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].Shape)

	b, err := adapter.LoadDir(dir)
	if err != nil {
		log.Fatal(err)
	}
	w := b.Weights["model.layers.0.self_attn.q_proj"]
	fmt.Println("loaded:", b)
	fmt.Println("A", w.A.Shape, w.A.Data, "scaling", b.LoRA.Scaling())
	// Output:
	// in the file, lora_A is [2 3]
	// loaded: LoRA r=2 alpha=4: 1 module, 14 params
	// A [3 2] [1 2 3 4 5 6] scaling 2
}

// ExampleReadONNXAdapter lists the parameters of an ONNX Runtime adapter file.
func ExampleReadONNXAdapter() {
	f, err := adapter.ReadONNXAdapter("../../shared/models/onnx-adapter-gpt2/two_lora_params.onnx_adapter")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("layout", f.Layout)
	for _, p := range f.Params {
		fmt.Printf("%s %v data_type %d\n", p.Name, p.Dims, p.DataType)
	}
	a, err := f.ToAdapter(nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Modules(), "r", a.LoRA.R)
	// Output:
	// layout genai-legacy
	// model.layers.0.attn.qkv_proj.lora_A.weight [3072 64] data_type 1
	// model.layers.0.attn.qkv_proj.lora_B.weight [64 9216] data_type 1
	// [model.layers.0.attn.qkv_proj] r 64
}

func ExampleLoRAConfig_Scaling() {
	cfg := adapter.DefaultLoRAConfig(".*")
	cfg.R, cfg.Alpha = 16, 32
	fmt.Println(cfg.Scaling())
	cfg.UseRSLoRA = true
	fmt.Println(cfg.Scaling())
	// Output:
	// 2
	// 8
}

func ExamplePrefixConfig_TableWidth() {
	cfg := adapter.PrefixConfig{NumPrefixTokens: 16, NumAttentionHeads: 32, MultiQueryGroupNum: 8, NumHiddenLayers: 2, HiddenSize: 4096}
	fmt.Println(cfg.KVHeads(), cfg.HeadDim(), cfg.TableWidth())
	// Output: 8 128 4096
}
