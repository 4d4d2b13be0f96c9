// Package demo runs peftonnx's embedded end-to-end example: it builds a
// small LLaMA-style model, injects LoRA, trains the adapter on a synthetic
// task the base model cannot do, merges it, checks that the merged and the
// adapted model agree and that no frozen weight moved, and reports what it
// did. `peftonnx demo` and `make demo` run it.
package demo
