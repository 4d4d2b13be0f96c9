// Package option applies functional options the one way that the
// packages taking them (runtime, session, rewrite, tokenizer and
// train/autodiff) read them: in order, a nil option skipped, the first
// error returned.
package option
