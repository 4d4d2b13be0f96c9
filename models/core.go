package models

// Core holds the fields that the BERT, GPT-2 and LLaMA configs share: the
// transformer's sizes and what its weights are drawn from. Each config
// embeds it.
type Core struct {
	VocabSize int
	Hidden    int // model width; a multiple of Heads
	Layers    int
	Heads     int

	Seed    uint64  // weights are a function of Seed alone
	InitStd float64 // standard deviation of linear and embedding weights; 0 means 0.02
}

// HeadDim returns the width of one attention head, Hidden/Heads.
func (c Core) HeadDim() int { return headDim(c.Hidden, c.Heads) }
