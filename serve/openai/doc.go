// Package openai is the HTTP layer over the serving engine (package serve):
// an OpenAI-compatible API in which the request's "model" names the base
// model or one of the loaded adapters.
//
// # Endpoints
//
//   - POST /v1/completions and POST /v1/chat/completions: prompt (a
//     string, strings, token ids) or messages (rendered with the model's
//     chat template, package chattemplate), max_tokens, temperature,
//     top_p, top_k, seed, stop, stream (server-sent events that end with
//     "data: [DONE]", stream_options.include_usage), usage and
//     finish_reason.
//   - GET /v1/models and /v1/models/{id}: the base and every adapter, an
//     adapter's parent being the base (vLLM's convention), each with the
//     content hash of what was loaded.
//   - POST /v1/load_lora_adapter and /v1/unload_lora_adapter, with vLLM's
//     body (lora_name, lora_path, load_inplace).
//   - GET /metrics (Prometheus) and GET /healthz.
//
// # Validation and limits
//
// Bodies are decoded strictly: truncated JSON, a field of the wrong type,
// an unknown field or a value out of range is a 400 that names the field;
// an unknown model is a 404 that lists the loaded ones; an adapter that
// does not fit the base is refused at load with the engine's reason.
// Nothing falls back to the base. Bodies over Options.MaxBodyBytes are
// 413, max_tokens over Options.MaxTokens and prompts over
// Options.MaxPromptTokens are 400, requests beyond
// Options.MaxConcurrent are 429. A client that goes away cancels its
// generation. With Options.APIKey every endpoint wants "Authorization:
// Bearer KEY"; with Options.AdminKey loading and unloading want that key
// instead. lora_path must lie under Options.AdapterRoot once symlinks are
// resolved (a folder's files too); without a root, loading over HTTP is
// off.
//
// # Metrics and logs
//
// /metrics has, by model (the base's name or an adapter's):
// peftonnx_http_requests_total (also by path and status),
// peftonnx_prompt_tokens_total, peftonnx_completion_tokens_total,
// peftonnx_request_duration_seconds, peftonnx_time_to_first_token_seconds
// (queue and prefill) and peftonnx_inter_token_seconds (a sequence's
// decoding steps); the engine's peftonnx_engine_steps_total,
// _step_seconds_total, _batch_size (a histogram of rows per step),
// _queued_requests, _active_sequences, _requests_total and
// _queue_seconds_total by model, _adapters_loaded, _adapters_resident,
// _adapters_evicted_total, _adapters_reloaded_total and _adapter_bytes;
// peftonnx_requests_rejected_total by reason, and Go's and the process's
// collectors. Each request is one log/slog line: method, path, status,
// duration, model and token counts; loads, unloads and refusals have
// theirs.
//
// Errors have OpenAI's shape: {"error": {"message", "type", "param",
// "code"}}. Serve shuts down gracefully: it stops accepting, lets requests
// in flight finish within a grace period, then cancels the rest.
package openai
