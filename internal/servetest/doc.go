// Package servetest builds what the tests of the serving engine and of its
// HTTP layer serve: a small LLaMA saved to a folder, with the tokenizer of
// the shared tiny LLaMA (../shared/models) beside it where asked; LoRA
// adapters of ranks 4 and 8 on different modules, a DoRA adapter and a
// prefix adapter, each a HuggingFace PEFT folder whose weights change the
// model's output; and the reference tokens of each adapter's merged model
// (of the DoRA adapter's adapted model, of the prefixed model),
// generated one prompt at a time by runtime's Generator without the
// engine.
package servetest
