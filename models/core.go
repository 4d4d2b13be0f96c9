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

// validate reports sizes that no model can be built with, the checks
// that every config's Validate starts with: a size that is not positive,
// a width that is not a multiple of the heads, a negative InitStd. model
// ("bert") starts the message.
func (c Core) validate(model string) error {
	switch {
	case c.VocabSize <= 0 || c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0:
		return errorf("%s: sizes must be positive: %+v", model, c)
	case c.Hidden%c.Heads != 0:
		return errorf("%s: hidden %d is not a multiple of heads %d", model, c.Hidden, c.Heads)
	case c.InitStd < 0:
		return errorf("%s: InitStd must not be negative", model)
	}
	return nil
}
