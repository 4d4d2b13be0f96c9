package openai

import (
	"net/http"
	"strings"

	"github.com/peftonnx/peftonnx/serve"
)

// modelJSON is one entry of /v1/models: OpenAI's fields, vLLM's root and
// parent, and what peftonnx knows of the adapter.
type modelJSON struct {
	ID       string   `json:"id"`
	Object   string   `json:"object"`
	Created  int64    `json:"created"`
	OwnedBy  string   `json:"owned_by"`
	Root     string   `json:"root"`
	Parent   *string  `json:"parent"`
	Kind     string   `json:"kind"`
	Hash     string   `json:"hash"`
	Rank     int      `json:"rank,omitempty"`
	Bytes    int64    `json:"bytes"`
	Resident bool     `json:"resident"`
	Targets  []string `json:"targets,omitempty"`
}

func (s *Server) modelEntry(a serve.AdapterInfo) modelJSON {
	m := modelJSON{ID: a.Name, Object: "model", Created: a.LoadedAt.Unix(), OwnedBy: "peftonnx", Root: a.Path,
		Kind: a.Kind, Hash: a.Hash, Rank: a.Rank, Bytes: a.Bytes, Resident: a.Resident, Targets: a.Targets}
	if isBase(a) {
		m.ID = s.opts.ModelName
	} else {
		base := s.opts.ModelName
		m.Parent = &base
	}
	return m
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	list := struct {
		Object string      `json:"object"`
		Data   []modelJSON `json:"data"`
	}{Object: "list", Data: []modelJSON{}}
	for _, a := range s.eng.Adapters() {
		list.Data = append(list.Data, s.modelEntry(a))
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	name, err := s.adapterFor(id)
	if err != nil {
		return err
	}
	for _, a := range s.eng.Adapters() {
		if a.Name == name || (name == "" && isBase(a)) {
			writeJSON(w, http.StatusOK, s.modelEntry(a))
			return nil
		}
	}
	return &apiError{status: http.StatusNotFound, typ: "invalid_request_error", param: "model", code: "model_not_found", message: "model " + id + " was unloaded"}
}
