package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/peftonnx/peftonnx/serve"
)

// apiError is an error answered with an HTTP status, in OpenAI's shape.
type apiError struct {
	status  int
	typ     string // "invalid_request_error", "authentication_error", ...
	param   string // the request field at fault, or ""
	code    string // a short machine-readable code, or ""
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, message: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON of an error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) body() errorBody {
	d := errorDetail{Message: e.message, Type: e.typ}
	if e.param != "" {
		d.Param = &e.param
	}
	if e.code != "" {
		d.Code = &e.code
	}
	return errorBody{d}
}

// errorStatuses maps the engine's and the standard library's errors to
// OpenAI's status, type, code and param; the first that matches wins.
// message, where given, replaces the error's own text.
var errorStatuses = []struct {
	target                    error
	status                    int
	typ, code, param, message string
}{
	{target: serve.ErrUnknownAdapter, status: http.StatusNotFound, typ: "invalid_request_error", code: "model_not_found", param: "model"},
	{target: serve.ErrAdapterMismatch, status: http.StatusBadRequest, typ: "invalid_request_error", code: "adapter_mismatch"},
	{target: serve.ErrAdapterExists, status: http.StatusConflict, typ: "invalid_request_error", code: "adapter_exists"},
	{target: serve.ErrInvalidRequest, status: http.StatusBadRequest, typ: "invalid_request_error", code: "invalid_request"},
	{target: serve.ErrTooLong, status: http.StatusBadRequest, typ: "invalid_request_error", code: "too_long"},
	{target: serve.ErrQueueFull, status: http.StatusTooManyRequests, typ: "rate_limit_error", code: "queue_full"},
	{target: serve.ErrClosed, status: http.StatusServiceUnavailable, typ: "server_error", code: "shutting_down"},
	{target: context.Canceled, status: http.StatusServiceUnavailable, typ: "server_error", code: "cancelled",
		message: "the generation was cancelled: the server is shutting down or the client went away"},
	{target: fs.ErrNotExist, status: http.StatusBadRequest, typ: "invalid_request_error", code: "not_found"},
}

// asAPIError maps an error, the engine's among them, to its status.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	e := &apiError{status: http.StatusInternalServerError, typ: "server_error", message: err.Error()}
	for _, m := range errorStatuses {
		if errors.Is(err, m.target) {
			e.status, e.typ, e.code, e.param = m.status, m.typ, m.code, m.param
			if m.message != "" {
				e.message = m.message
			}
			break
		}
	}
	return e
}

// writeError answers err as JSON with its status.
func writeError(w http.ResponseWriter, err error) {
	e := asAPIError(err)
	if e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="peftonnx"`)
	}
	writeJSON(w, e.status, e.body())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"cannot encode the response","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
