package train

import "github.com/peftonnx/peftonnx/tokenizer"

// Tokenizer is the tokenizer that LoadJSONL encodes "text" and
// "src"/"tgt" examples with; load one with tokenizer.Load.
type Tokenizer = tokenizer.Tokenizer
