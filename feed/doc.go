// Package feed reads what each input of a model is for, from its name, its
// element type and its declared shape, and says what to feed it when the
// caller's data does not: the one place where the trainer, the generator,
// "peftonnx run" and the server learn how a model wants to be fed.
//
// Classify sorts the inputs into roles: token ids, attention mask, token
// types, positions, key/value caches, cross-attention caches and
// recurrent or convolution states, under the names that exporters use
// (input_ids, input_word_ids; attention_mask, input_mask; token_type_ids,
// segment_ids, input_type_ids; position_ids; past_key_values.{i}.key and
// .value, stacked past_{i}, a single past, past_key_self_{i} and
// past_key_cross_{i}, past_key_values.{i}.decoder.key and .encoder.key;
// past_conv.{i} and other past_* inputs without a past-length dimension).
// Names match without regard to case and without a TensorFlow ":0" suffix.
// Each cache or state is matched with the output that returns its next
// value (present.{i}.key, present_{i}, present_conv.{i}, …). Layers need
// not be contiguous: a hybrid decoder may have caches on some layers and
// states on others.
//
// # Defaults
//
// An input that the data does not give is fed its role's default
// (Slot.Default says it in words, Slot.FeedShape gives the shape):
//
//   - attention mask: ones over every token, the past's included, and
//     zeros at padding, [batch, past+sequence];
//   - token types: zeros, [batch, sequence];
//   - positions: past, past+1, … along each row, [batch, sequence];
//   - key/value caches: empty, the past-length axis 0 (or the past's length
//     where a caller carries one);
//   - states: zeros of the declared shape, with the batch's size.
//
// Token ids, cross-attention caches and inputs of no known role have no
// default: the caller gives them, or a model's own default (an initializer
// of the same name) stands.
//
// Every value is fed in the element type and rank that the model declares:
// a model with int32 ids gets int32 ids. Check compares a value with its
// input before a run, and names the input, its declared type and shape, and
// what was given.
//
// This package knows no tensors and no sessions: it describes. Package
// runtime, package train and the server build the tensors.
//
// RotaryLimit reads how many positions a model's rotary embeddings cover
// (the cos_cache rows of RotaryEmbedding and GroupQueryAttention nodes).
package feed
