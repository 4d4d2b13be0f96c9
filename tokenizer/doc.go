// Package tokenizer reads a HuggingFace tokenizer.json and encodes text to
// token ids and back as HF tokenizers does, for the tokenizers of the
// models peftonnx trains: SentencePiece-style BPE (Llama), byte-level BPE
// (GPT-2) and WordPiece (BERT).
//
// # Pipeline
//
// Load (or Parse) builds a Tokenizer from the file's parts, and Encode runs
// them in HF's order:
//
//   - added_tokens: special tokens such as <s> are split out of the text
//     first, leftmost and longest first, with their single_word, lstrip
//     and rstrip options; tokens marked normalized are found after the
//     normalizer instead.
//   - normalizer: Sequence, Prepend, Replace, Lowercase, Strip,
//     StripAccents, NFC, NFD, NFKC, NFKD, Nmt, ByteLevel, BertNormalizer.
//   - pre_tokenizer: Sequence, Split, Metaspace, ByteLevel (GPT-2's word
//     split and byte alphabet), BertPreTokenizer, Whitespace,
//     WhitespaceSplit, Punctuation, Digits, CharDelimiterSplit.
//   - model: BPE (merges as "a b" or ["a", "b"], unk_token, fuse_unk,
//     byte_fallback, continuing_subword_prefix, end_of_word_suffix,
//     ignore_merges), WordPiece, WordLevel.
//   - post_processor, when Encode is asked to add special tokens:
//     TemplateProcessing (Llama's BOS), BertProcessing, RobertaProcessing,
//     ByteLevel, Sequence.
//
// Decode maps ids to tokens and runs the decoder: Sequence, Replace,
// ByteFallback, Fuse, Strip, Metaspace, ByteLevel, WordPiece, BPEDecoder.
//
// BPE merges a word in O(n log n) for n characters (a heap of candidate
// pairs over a linked list of symbols), so a text of 100k characters that
// is one word, as Llama's tokenizer, which has no pre-tokenizer, makes of
// any text, is encoded in a fraction of a second.
//
// # Errors and limits
//
// A file that cannot be read as a tokenizer gives a one-line error that
// names the file and the key at fault (`tokenizer: FILE: model.merges[3]:
// token "x" is not in the vocabulary`); components of types the package
// does not implement are refused by name (`unsupported normalizer type
// "Precompiled"`), and regular expressions are compiled at load. Errors
// quote at most 60 characters of any value. Files over 64 MiB and texts
// over 1 MiB are refused unless WithMaxFileBytes and WithMaxTextBytes say
// otherwise; Encode also refuses text that is not UTF-8.
//
// # Limits of the implementation
//
//   - Regular expressions are Oniguruma's in HF and Go's here: \s, \d and
//     \w are rewritten as Unicode classes, but lookaround and atomic
//     groups are refused, except in GPT-2's pattern, which is implemented
//     by hand. Split patterns with lookahead of other models (such as
//     Llama 3's) are refused.
//   - Not implemented: the Unigram model, the Precompiled normalizer
//     (T5, ALBERT), the UnicodeScripts pre-tokenizer and the CTC decoder.
//   - BPE dropout is ignored: Encode is deterministic, as for inference.
//   - The file's truncation and padding are ignored, as transformers does
//     unless asked; Encode returns the whole sequence.
//   - Added tokens take the ids that HF tokenizers gives them (the
//     vocabulary's id of the same token, else the next after the
//     vocabulary), not the ids written beside them in the file.
//   - Character classes come from Go's Unicode tables, which may be of
//     another Unicode version than the Rust crates HF uses.
package tokenizer
