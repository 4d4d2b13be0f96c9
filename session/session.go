package session

import (
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// Session is an ONNX Runtime session on a model with, maybe, an adapter.
// Its runs are the runtime.Session's; Feeds and Prefix say what a caller
// must add or know. Close it when done.
type Session struct {
	*rt.Session
	// Feeds are graph inputs to add to every run: the adapter's factors
	// where the model takes them as inputs (rewrite's AsInputs), else nil.
	Feeds map[string]*rt.Tensor
	// Prefix is the prefix that the model carries, from its file or from
	// a prefix adapter, else nil. A prefix is a past that every run has;
	// injection widens a causal mask that holds for an empty past only
	// (onnxruntime-genai's, Prefix.WidenedMasks), so prompts of any length
	// run in one pass.
	Prefix *rewrite.PrefixSite
	// tmpDir is a temporary folder that could not be removed when the
	// session opened; Close tries again.
	tmpDir string
}

// Close releases the session and removes any temporary files. Closing a
// nil Session is safe.
func (s *Session) Close() error {
	if s == nil {
		return nil
	}
	err := s.Session.Close()
	if s.tmpDir != "" {
		if rerr := os.RemoveAll(s.tmpDir); rerr != nil && err == nil {
			err = errorf("removing %s: %w", s.tmpDir, rerr)
		}
		s.tmpDir = ""
	}
	return err
}

// Open opens a session on the model file at path, with the adapter that
// the options name, if any (see the package doc for how it is applied).
// The model is loaded by package graph first, so that a bad or missing
// file, or a missing external data file, is an error that names it before
// ONNX Runtime is involved. Without an adapter, or with one that is fed,
// ONNX Runtime reads the file itself. No file is changed.
func Open(path string, opts ...Option) (*Session, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	m, err := graph.Load(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if o.adapterPath != "" {
		if feeds, ok, err := inputFeeds(m, o.adapterPath); err != nil {
			return nil, err
		} else if ok {
			return openFile(m, path, o, &Session{Feeds: feeds})
		}
	}
	ad, prefix, err := o.adapterFor(m)
	if err != nil {
		return nil, err
	}
	if ad == nil {
		return openFile(m, path, o, &Session{Prefix: prefix})
	}
	return openAdapted(m, path, ad, o)
}

// openFile closes m, which Open loaded to check, and lets ONNX Runtime
// read the model file at path itself, as s's session.
func openFile(m *graph.Model, path string, o *options, s *Session) (*Session, error) {
	m.Close()
	rs, err := rt.NewSession(path, o.runtime...)
	if err != nil {
		return nil, err
	}
	s.Session = rs
	return s, nil
}

// OpenModel opens a session on m, a model in memory, with the adapter that
// the options name, if any. m is not changed: an adapter is applied to a
// copy, which shares m's weights. Weights that m maps from external data
// files stay there (ONNX Runtime reads them from m.Dir); a model whose
// serialized form would pass the spill size (WithSpillAbove) goes through
// a temporary folder. The caller keeps m and closes it.
func OpenModel(m *graph.Model, opts ...Option) (*Session, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.adapterPath != "" {
		if feeds, ok, err := inputFeeds(m, o.adapterPath); err != nil {
			return nil, err
		} else if ok {
			s, err := openInMemory(m, o.modelLabel(m), o)
			if err != nil {
				return nil, err
			}
			s.Feeds = feeds
			return s, nil
		}
	}
	ad, prefix, err := o.adapterFor(m)
	if err != nil {
		return nil, err
	}
	if ad == nil {
		s, err := openInMemory(m, o.modelLabel(m), o)
		if err != nil {
			return nil, err
		}
		s.Prefix = prefix
		return s, nil
	}
	c := m.Clone()
	defer c.Close()
	return openAdapted(c, "", ad, o)
}

// openAdapted opens a session on m with ad: fed where m takes LoRA factors
// as inputs, else applied to m, which it may change. path is m's file, or
// "" for a model in memory, which is then opened from memory in any case.
func openAdapted(m *graph.Model, path string, ad *adapter.Adapter, o *options) (*Session, error) {
	name, adName := o.modelLabel(m), o.adapterLabel()
	if ad.LoRA != nil {
		if sites, err := rewrite.Sites(m); err == nil {
			return openFed(m, path, sites, ad, o)
		}
	}
	adapted, err := rewrite.Apply(m, ad)
	if err != nil {
		return nil, errorf("applying %s to %s: %w", adName, name, err)
	}
	s, err := openInMemory(m, name, o)
	if err != nil {
		return nil, err
	}
	s.Prefix = adapted.Prefix
	return s, nil
}

// openFed opens a session on m, whose LoRA sites are sites, with the LoRA
// adapter ad fed to the factor inputs.
func openFed(m *graph.Model, path string, sites []rewrite.Site, ad *adapter.Adapter, o *options) (*Session, error) {
	name, adName := o.modelLabel(m), o.adapterLabel()
	if !sites[0].AsInputs {
		return nil, errorf("%s already carries LoRA branches, so %s cannot be added: give its base model, or one that takes its LoRA factors as inputs (inject --as-inputs)", name, adName)
	}
	if len(ad.Extra) > 0 {
		return nil, errorf("%s also trains %d base tensors (%s), which %s cannot take as inputs: run its base model with the adapter instead", adName, len(ad.Extra), describeExtra(ad), name)
	}
	feeds, err := feedsOf(m, ad)
	if err != nil {
		return nil, errorf("feeding %s to %s: %w", adName, name, err)
	}
	var s *Session
	if path != "" {
		m.Close()
		core, err := rt.NewSession(path, o.runtime...)
		if err != nil {
			return nil, err
		}
		s = &Session{Session: core}
	} else if s, err = openInMemory(m, name, o); err != nil {
		return nil, err
	}
	s.Feeds = feeds
	return s, nil
}

// openInMemory opens a session on m from its serialized bytes, with
// external data left where it is, or, when those bytes would pass
// o.spillAbove, through a temporary copy with external data. name names m
// in errors.
func openInMemory(m *graph.Model, name string, o *options) (*Session, error) {
	if int64(proto.Size(m.Proto)) > o.spillAbove {
		return openSpilled(m, name, o)
	}
	b, dir, err := m.MarshalReferencing()
	if err != nil {
		return nil, errorf("%s: %w", name, err)
	}
	opts := o.runtime
	if dir != "" {
		opts = append([]rt.Option{rt.WithConfigEntry(externalFolderKey, dir)}, opts...)
	}
	s, err := rt.NewSessionFromBytes(b, opts...)
	if err != nil {
		return nil, err
	}
	return &Session{Session: s}, nil
}

// openSpilled saves m with every tensor of 1 KiB or more in an external
// data file, in a temporary folder (os.TempDir, or $TMPDIR), opens the
// session from there and removes the folder: ONNX Runtime has read or
// mapped what it needs by then (a mapping outlives the file's name).
func openSpilled(m *graph.Model, name string, o *options) (*Session, error) {
	dir, err := os.MkdirTemp("", "peftonnx-session-")
	if err != nil {
		return nil, errorf("saving %s to a temporary folder: %w", name, err)
	}
	path := filepath.Join(dir, "model.onnx")
	if err := m.Save(path, graph.SaveOptions{ExternalData: true}); err != nil {
		os.RemoveAll(dir)
		return nil, errorf("saving %s to %s (set TMPDIR to a folder with room for the model): %w", name, dir, err)
	}
	core, err := rt.NewSession(path, o.runtime...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Session{Session: core}
	if err := os.RemoveAll(dir); err != nil {
		s.tmpDir = dir
	}
	return s, nil
}

// externalFolderKey is the ONNX Runtime session entry that says where a
// model serialized in memory finds its external data files.
const externalFolderKey = "session.model_external_initializers_file_folder_path"

// prefixOf returns the prefix that m records, or nil when it carries none.
// Metadata that names a prefix but cannot be read is an error.
func prefixOf(m *graph.Model) (*rewrite.PrefixSite, error) {
	if _, ok := m.Metadata(rewrite.PrefixMetadataKey); ok {
		return rewrite.PrefixSiteOf(m)
	}
	return nil, nil
}

// adapterFor returns the adapter that the options name for m or, where
// they name none, the prefix that m carries itself (nil if none).
func (o *options) adapterFor(m *graph.Model) (*adapter.Adapter, *rewrite.PrefixSite, error) {
	ad, err := o.loadAdapter()
	if err != nil || ad != nil {
		return ad, nil, err
	}
	prefix, err := prefixOf(m)
	return nil, prefix, err
}

// loadAdapter returns the adapter of the options: the one given, the one
// read from the file given, or nil.
func (o *options) loadAdapter() (*adapter.Adapter, error) {
	if o.adapterPath == "" {
		return o.adapter, nil
	}
	return LoadAdapter(o.adapterPath)
}

// LoadAdapter reads the adapter at path, a HuggingFace PEFT directory or
// an .onnx_adapter file, LoRA or prefix, as WithAdapterFile does: an
// adapter with a config but no weights (a PaddleNLP directory without
// adapter_model.safetensors) is an error, since there is nothing to apply.
func LoadAdapter(path string) (*adapter.Adapter, error) {
	ad, err := adapter.Load(path)
	if err != nil {
		return nil, err
	}
	switch {
	case ad.LoRA != nil && len(ad.Weights) == 0:
		return nil, errorf("adapter %s holds a LoRA config but no weights (no %s)", path, adapter.HFWeightsFile)
	case ad.Prefix != nil && ad.Prompt == nil:
		return nil, errorf("adapter %s holds a prefix config but no weights (no %s)", path, adapter.HFWeightsFile)
	}
	return ad, nil
}

// adapterLabel names the adapter in messages.
func (o *options) adapterLabel() string {
	if o.adapterPath != "" {
		return o.adapterPath
	}
	return "the adapter"
}

// modelLabel names m in messages: as WithName says, else its file, else
// "the model".
func (o *options) modelLabel(m *graph.Model) string {
	switch {
	case o.name != "":
		return o.name
	case m.Path != "":
		return m.Path
	}
	return "the model"
}
