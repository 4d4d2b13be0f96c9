package openai

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// authorize checks the request's bearer key: the admin key for load and
// unload where one is set, else the API key where one is set.
func (s *Server) authorize(r *http.Request, admin bool) error {
	want, what := s.opts.APIKey, "API key"
	if admin && s.opts.AdminKey != "" {
		want, what = s.opts.AdminKey, "admin key"
	}
	if want == "" {
		return nil
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return &apiError{status: http.StatusUnauthorized, typ: "authentication_error", code: "missing_api_key",
			message: "this server wants its " + what + " as \"Authorization: Bearer KEY\""}
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(want)) != 1 {
		return &apiError{status: http.StatusUnauthorized, typ: "authentication_error", code: "invalid_api_key",
			message: "the " + what + " given is not this server's"}
	}
	return nil
}
