package main

import (
	gocontext "context"

	"github.com/peftonnx/peftonnx/demo"
)

func init() {
	register(&command{
		name:    "demo",
		args:    "[--steps N] [--seed N] [--out DIR] [--threads N] [--device cpu|cuda]",
		summary: "build a small model, inject LoRA, train it, merge, and report",
		detail: `The embedded default: builds a 2-layer LLaMA-style model, injects LoRA
(r=8) into every linear layer, trains the adapter on a synthetic task the
base cannot do (each token t is followed by (5t+3) mod 64), merges it,
checks that merged and adapted outputs agree and that no frozen weight
moved, and reports loss, accuracy and timing. With --out, the base,
adapted and merged models and the adapter (HF PEFT layout) are written.`,
		run: runDemo,
	})
}

func runDemo(cx *context, args []string) error {
	c := demo.Default()
	fs := cx.flags()
	fs.IntVar(&c.Steps, "steps", c.Steps, "optimizer steps, `N`")
	seed := fs.Uint64("seed", c.Seed, "seed for weights, adapter init and data, `N`")
	fs.StringVar(&c.OutDir, "out", "", "write models and the adapter to `DIR`")
	rt := addRuntimeFlags(fs)
	pos, err := cx.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return cx.usagef("demo takes no arguments, got %d", len(pos))
	}
	if c.Steps <= 0 {
		return cx.usagef("--steps must be positive, got %d", c.Steps)
	}
	if err := rt.check(cx); err != nil {
		return err
	}
	c.Seed = *seed
	c.Session = rt.options()
	_, err = demo.Run(gocontext.Background(), cx.stdout, c)
	return err
}
