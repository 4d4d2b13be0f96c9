package rewrite_test

import (
	"fmt"
	"log"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
)

func ExampleFindLinears() {
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		log.Fatal(err)
	}
	linears, err := rewrite.FindLinears(m)
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range linears[:4] {
		fmt.Printf("%s %s %d×%d\n", l.Module, l.Op, l.In, l.Out)
	}
	// Output:
	// transformer.h.0.attn.c_attn MatMul 16×48
	// transformer.h.0.attn.c_proj MatMul 16×16
	// transformer.h.0.mlp.c_fc MatMul 16×40
	// transformer.h.0.mlp.c_proj MatMul 40×16
}

func ExampleMatchTargets() {
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		log.Fatal(err)
	}
	linears, err := rewrite.FindLinears(m)
	if err != nil {
		log.Fatal(err)
	}
	_, err = rewrite.MatchTargets(linears, []string{"q_proj"})
	fmt.Println(err)
	// Output:
	// rewrite: targets ["q_proj"] matched no linear layer; the model's modules are: transformer.h.0.attn.c_attn, transformer.h.0.attn.c_proj, transformer.h.0.mlp.c_fc, transformer.h.0.mlp.c_proj, transformer.h.1.attn.c_attn, transformer.h.1.attn.c_proj, transformer.h.1.mlp.c_fc, transformer.h.1.mlp.c_proj, lm_head
}

func ExampleInjectLoRA() {
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		log.Fatal(err)
	}
	cfg := adapter.DefaultLoRAConfig(".*c_attn")
	cfg.R, cfg.Alpha = 4, 8
	sites, sum, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(1))
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range sites {
		fmt.Println(s.Module, s.A, s.AShape(int64(s.R)), s.B, s.BShape(int64(s.R)), "scale", s.Scale)
	}
	fmt.Println(sum)
	// Output:
	// transformer.h.0.attn.c_attn transformer.h.0.attn.c_attn.lora_A.weight [16 4] transformer.h.0.attn.c_attn.lora_B.weight [4 48] scale 2
	// transformer.h.1.attn.c_attn transformer.h.1.attn.c_attn.lora_A.weight [16 4] transformer.h.1.attn.c_attn.lora_B.weight [4 48] scale 2
	// trainable params: 512 || all params: 7,568 || trainable%: 6.7653
}

func ExampleMerge() {
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		log.Fatal(err)
	}
	nodes := len(m.Graph().Node)
	if _, _, err := rewrite.InjectLoRA(m, adapter.DefaultLoRAConfig(".*attn.*")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("adapted:", len(m.Graph().Node)-nodes, "more nodes")
	if err := rewrite.Merge(m); err != nil {
		log.Fatal(err)
	}
	fmt.Println("merged:", len(m.Graph().Node)-nodes, "more nodes")
	// Output:
	// adapted: 12 more nodes
	// merged: 0 more nodes
}
