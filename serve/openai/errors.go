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

// asAPIError maps an error, the engine's among them, to its status.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	e := &apiError{status: http.StatusInternalServerError, typ: "server_error", message: err.Error()}
	switch {
	case errors.Is(err, serve.ErrUnknownAdapter):
		e.status, e.typ, e.code, e.param = http.StatusNotFound, "invalid_request_error", "model_not_found", "model"
	case errors.Is(err, serve.ErrAdapterMismatch):
		e.status, e.typ, e.code = http.StatusBadRequest, "invalid_request_error", "adapter_mismatch"
	case errors.Is(err, serve.ErrAdapterExists):
		e.status, e.typ, e.code = http.StatusConflict, "invalid_request_error", "adapter_exists"
	case errors.Is(err, serve.ErrInvalidRequest):
		e.status, e.typ, e.code = http.StatusBadRequest, "invalid_request_error", "invalid_request"
	case errors.Is(err, serve.ErrTooLong):
		e.status, e.typ, e.code = http.StatusBadRequest, "invalid_request_error", "too_long"
	case errors.Is(err, serve.ErrQueueFull):
		e.status, e.typ, e.code = http.StatusTooManyRequests, "rate_limit_error", "queue_full"
	case errors.Is(err, serve.ErrClosed):
		e.status, e.typ, e.code = http.StatusServiceUnavailable, "server_error", "shutting_down"
	case errors.Is(err, context.Canceled):
		e.status, e.typ, e.code = http.StatusServiceUnavailable, "server_error", "cancelled"
		e.message = "the generation was cancelled: the server is shutting down or the client went away"
	case errors.Is(err, fs.ErrNotExist):
		e.status, e.typ, e.code = http.StatusBadRequest, "invalid_request_error", "not_found"
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
