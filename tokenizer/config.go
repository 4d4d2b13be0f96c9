package tokenizer

import (
	"encoding/json"
)

// tokenizerConfig is the part of tokenizer_config.json that is read: the
// special tokens' names, each a string or an object with "content".
type tokenizerConfig struct {
	BOS json.RawMessage `json:"bos_token"`
	EOS json.RawMessage `json:"eos_token"`
	Pad json.RawMessage `json:"pad_token"`
}

// tokenContent returns the token that a tokenizer_config.json entry names.
func tokenContent(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Content
	}
	return ""
}

// setSpecialIDs finds the special token ids: from tokenizer_config.json
// (cfg, read from cfgPath; nil when there is none), else from the
// post-processor's template (BOS first, EOS last), else by the usual names.
func (t *Tokenizer) setSpecialIDs(cfg []byte, cfgPath string) error {
	var c tokenizerConfig
	if cfg != nil {
		if err := json.Unmarshal(cfg, &c); err != nil {
			return errorf("%s: %w", cfgPath, &jsonError{key: "file", err: err})
		}
	}
	t.bos = t.firstID(tokenContent(c.BOS))
	t.eos = t.firstID(tokenContent(c.EOS))
	t.pad = t.firstID(tokenContent(c.Pad))
	if tp := t.template; tp != nil && len(tp.pieces) > 0 {
		if first := tp.pieces[0]; !first.sequence && t.bos < 0 {
			t.bos = t.firstID(first.special)
		}
		if last := tp.pieces[len(tp.pieces)-1]; !last.sequence && len(tp.pieces) > 1 && t.eos < 0 {
			t.eos = t.firstID(last.special)
		}
	}
	if t.bos < 0 {
		t.bos = t.firstID("<s>", "<|begin_of_text|>", "<bos>", "[CLS]")
	}
	if t.eos < 0 {
		t.eos = t.firstID("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[SEP]")
	}
	return nil
}

// firstID returns the id of the first of tokens that the tokenizer has,
// or -1.
func (t *Tokenizer) firstID(tokens ...string) int64 {
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		if id, ok := t.ids[tok]; ok {
			return id
		}
	}
	return -1
}

// BOS returns the beginning-of-sequence token id, or -1.
func (t *Tokenizer) BOS() int64 { return t.bos }

// EOS returns the end-of-sequence token id, or -1.
func (t *Tokenizer) EOS() int64 { return t.eos }

// PadID returns the id to pad batches with: the configured pad token, else
// EOS, else 0. Padded positions are masked out of attention and loss, so
// the choice only has to be a valid id.
func (t *Tokenizer) PadID() int64 {
	switch {
	case t.pad >= 0:
		return t.pad
	case t.eos >= 0:
		return t.eos
	}
	return 0
}
