package openai

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// loadRequest is vLLM's body of POST /v1/load_lora_adapter.
type loadRequest struct {
	LoRAName    *string `json:"lora_name"`
	LoRAPath    *string `json:"lora_path"`
	LoadInplace *bool   `json:"load_inplace"`
}

// unloadRequest is vLLM's body of POST /v1/unload_lora_adapter.
type unloadRequest struct {
	LoRAName  *string `json:"lora_name"`
	LoRAIntID *int    `json:"lora_int_id"`
}

// maxNameLen limits an adapter's name.
const maxNameLen = 128

// maxAdapterFiles limits the files and folders in an adapter folder.
const maxAdapterFiles = 1000

func (s *Server) handleLoad(w http.ResponseWriter, r *http.Request) error {
	var req loadRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	name, err := s.adapterName(req.LoRAName)
	if err != nil {
		return err
	}
	setModel(r, name)
	if req.LoRAPath == nil || *req.LoRAPath == "" {
		return badRequest("lora_path", "lora_path is required")
	}
	path, err := s.underRoot(*req.LoRAPath)
	if err != nil {
		return err
	}
	replace := req.LoadInplace != nil && *req.LoadInplace
	info, err := s.eng.Load(name, path, replace)
	if err != nil {
		s.log.Warn("adapter refused", "name", name, "path", path, "err", err.Error())
		e := asAPIError(err)
		if e.param == "" {
			e.param = "lora_path"
		}
		return e
	}
	s.log.Info("adapter loaded", "name", name, "path", path, "kind", info.Kind, "rank", info.Rank, "hash", info.Hash, "bytes", info.Bytes, "replaced", replace)
	s.metrics.loads.WithLabelValues("load").Inc()
	writeJSON(w, http.StatusOK, s.modelEntry(info))
	return nil
}

func (s *Server) handleUnload(w http.ResponseWriter, r *http.Request) error {
	var req unloadRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.LoRAIntID != nil {
		return badRequest("lora_int_id", "lora_int_id is not supported: give lora_name")
	}
	name, err := s.adapterName(req.LoRAName)
	if err != nil {
		return err
	}
	setModel(r, name)
	if _, err := s.adapterFor(name); err != nil {
		return err
	}
	if err := s.eng.Unload(name); err != nil {
		return err
	}
	s.log.Info("adapter unloaded", "name", name)
	s.metrics.loads.WithLabelValues("unload").Inc()
	writeJSON(w, http.StatusOK, map[string]any{"id": name, "object": "model", "deleted": true})
	return nil
}

// adapterName checks lora_name: given, not the base's, printable, short.
func (s *Server) adapterName(p *string) (string, error) {
	if p == nil || *p == "" {
		return "", badRequest("lora_name", "lora_name is required")
	}
	name := *p
	switch {
	case name == s.opts.ModelName:
		return "", badRequest("lora_name", "lora_name %q is the base model's name", name)
	case len(name) > maxNameLen:
		return "", badRequest("lora_name", "lora_name is %d bytes, over %d", len(name), maxNameLen)
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return "", badRequest("lora_name", "lora_name %q has spaces or unprintable characters", name)
	}
	return name, nil
}

// underRoot resolves lora_path (relative to the adapter root, or
// absolute) with its symlinks and checks that it, and for a folder each
// file in it, lies under the root. It returns the resolved path.
func (s *Server) underRoot(p string) (string, error) {
	root := s.opts.AdapterRoot
	if root == "" {
		return "", &apiError{status: http.StatusForbidden, typ: "permission_error", param: "lora_path", code: "loading_disabled",
			message: "loading adapters over HTTP is off: start the server with --adapter-root DIR"}
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	outside := func(what string) error {
		return &apiError{status: http.StatusForbidden, typ: "permission_error", param: "lora_path", code: "outside_adapter_root",
			message: fmt.Sprintf("lora_path %s lies outside the adapter root %s", what, root)}
	}
	real, err := filepath.EvalSymlinks(p)
	if errors.Is(err, fs.ErrNotExist) {
		if !within(root, filepath.Clean(p)) {
			return "", outside(fmt.Sprintf("%q", p))
		}
		return "", badRequest("lora_path", "lora_path %q does not exist", p)
	}
	if err != nil {
		return "", badRequest("lora_path", "lora_path %q: %v", p, err)
	}
	if !within(root, real) {
		if real != filepath.Clean(p) {
			return "", outside(fmt.Sprintf("%q (through a symlink, to %s)", p, real))
		}
		return "", outside(fmt.Sprintf("%q", p))
	}
	st, err := os.Stat(real)
	if err != nil || !st.IsDir() {
		return real, nil
	}
	// A folder's files, at any depth, must not lead out either. WalkDir
	// does not follow links: each is resolved and checked here.
	count := 0
	err = filepath.WalkDir(real, func(f string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if count++; count > maxAdapterFiles {
			return badRequest("lora_path", "lora_path %q has over %d files", p, maxAdapterFiles)
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := filepath.EvalSymlinks(f)
		if err != nil {
			return nil // a dangling link: the engine reports what it misses
		}
		if !within(root, target) {
			rel, _ := filepath.Rel(real, f)
			return outside(fmt.Sprintf("%q: its file %s links to %s, which", p, rel, target))
		}
		return nil
	})
	var ae *apiError
	if errors.As(err, &ae) {
		return "", ae
	}
	if err != nil {
		return "", badRequest("lora_path", "lora_path %q: %v", p, err)
	}
	return real, nil
}

// within reports whether path is root or lies under it (both absolute and
// clean).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
