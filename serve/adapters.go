package serve

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// entry is one loaded version of an adapter. A reload under the same name
// makes a new entry; sequences in flight keep the one they started with.
// Its fields are fixed at load, but for what mu guards.
type entry struct {
	name, path, kind, hash string
	rank                   int
	targets                []string
	loadedAt               time.Time

	mu       sync.Mutex
	factors  map[string]rewrite.StackedFactor // LoRA, by module; nil while evicted
	past     map[string]*rt.Tensor            // prefix: the keys and values, [1, kv, P, head_dim] each
	bytes    int64
	pins     int   // requests that hold it: not evicted while > 0
	lastUsed int64 // the engine's clock at its last use
	reloads  int   // times read again after eviction, until retired
}

func (a *entry) info() AdapterInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := a.factors != nil || a.past != nil
	bytes := int64(0)
	if res {
		bytes = a.bytes
	}
	return AdapterInfo{Name: a.name, Kind: a.kind, Path: a.path, Hash: a.hash, Rank: a.rank,
		Bytes: bytes, Resident: res, LoadedAt: a.loadedAt, Targets: slices.Clone(a.targets)}
}

// Load reads the adapter at path (a HuggingFace PEFT folder, an
// .onnx_adapter file or a PaddleNLP folder; LoRA or prefix) and makes it
// available under name. It checks that the adapter fits the base model:
// every LoRA module must match a linear layer with factors of its shape,
// and a prefix must have the base's layers, KV heads and head width;
// an error that wraps ErrAdapterMismatch says what does not fit. With
// replace, a loaded adapter of that name is swapped for the new one
// atomically: requests in flight finish on the old one, later ones get
// the new one. Without it, a loaded name is ErrAdapterExists.
func (e *Engine) Load(name, path string, replace bool) (AdapterInfo, error) {
	if name == "" || strings.TrimSpace(name) != name {
		return AdapterInfo{}, errorf("adapter name %q: want a non-empty name without leading or trailing spaces", name)
	}
	e.mu.Lock()
	_, exists := e.adapters[name]
	closed := e.closed
	e.mu.Unlock()
	switch {
	case closed:
		return AdapterInfo{}, errorf("load %q: %w", name, ErrClosed)
	case exists && !replace:
		return AdapterInfo{}, errorf("load %q from %s: %w (give replace to swap it)", name, path, ErrAdapterExists)
	}
	a, err := e.read(name, path)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		// An error of a DoRA adapter's gains may be that of the stack
		// closing under it.
		return AdapterInfo{}, errorf("load %q: %w", name, ErrClosed)
	}
	if err != nil {
		e.mu.Unlock()
		return AdapterInfo{}, err
	}
	if old, ok := e.adapters[name]; ok && !replace {
		e.mu.Unlock()
		return AdapterInfo{}, errorf("load %q from %s: %w (give replace to swap it)", name, path, ErrAdapterExists)
	} else if ok {
		e.retireLocked(old)
	}
	e.clock++
	a.lastUsed = e.clock
	e.adapters[name] = a
	e.evictLocked()
	e.mu.Unlock()
	e.log.Info("adapter loaded", "name", name, "path", path, "kind", a.kind, "rank", a.rank, "hash", a.hash, "replace", replace)
	return a.info(), nil
}

// read loads and checks the adapter at path, as an entry named name.
func (e *Engine) read(name, path string) (*entry, error) {
	ad, err := session.LoadAdapter(path)
	if err != nil {
		return nil, errorf("adapter %q: %w", name, err)
	}
	hash, err := adapterHash(ad)
	if err != nil {
		return nil, errorf("adapter %q at %s: %w", name, path, err)
	}
	a := &entry{name: name, path: path, hash: hash, loadedAt: time.Now()}
	if err := e.fill(a, ad); err != nil {
		return nil, err
	}
	return a, nil
}

// fill checks ad against the base and gives a its tensors.
func (e *Engine) fill(a *entry, ad *adapter.Adapter) error {
	mismatch := func(err error) error {
		return errorf("adapter %q at %s: %w: %w", a.name, a.path, ErrAdapterMismatch, err)
	}
	switch {
	case ad.LoRA != nil && ad.LoRA.UseDoRA && !e.opts.DoRA:
		return mismatch(errors.New("a DoRA adapter (use_dora) needs the engine built for DoRA: start the server with --dora (Options.DoRA)"))
	case ad.LoRA != nil:
		f, err := e.stacked.Factors(ad)
		if err != nil {
			return mismatch(err)
		}
		a.kind, a.factors, a.targets, a.rank, a.bytes = KindLoRA, f, nil, 0, 0
		for mod, fa := range f {
			a.targets = append(a.targets, mod)
			a.rank = max(a.rank, fa.R)
			a.bytes += int64(4 * (len(fa.A) + len(fa.B) + len(fa.Gain)))
		}
		sort.Strings(a.targets)
	case ad.Prefix != nil:
		past, p, err := prefixPast(e.info, ad)
		if err != nil {
			return mismatch(err)
		}
		a.kind, a.past, a.rank, a.bytes = KindPrefix, past, p, 0
		for _, t := range past {
			a.bytes += int64(t.Len() * 4)
		}
	default:
		return mismatch(errors.New("neither LoRA nor prefix"))
	}
	return nil
}

// Unload removes the adapter name. Requests in flight on it finish; later
// ones get ErrUnknownAdapter.
func (e *Engine) Unload(name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.adapters[name]
	if !ok {
		return errorf("unload %q: %w (loaded: %s)", name, ErrUnknownAdapter, e.namesLocked())
	}
	delete(e.adapters, name)
	e.retireLocked(a)
	e.log.Info("adapter unloaded", "name", name)
	return nil
}

// retireLocked keeps the reload count of a, which leaves the engine's
// list, in the totals. e.mu is held.
func (e *Engine) retireLocked(a *entry) {
	a.mu.Lock()
	e.stats.Reloaded += int64(a.reloads)
	a.reloads = 0
	a.mu.Unlock()
}

// Adapters lists the base first, then the adapters by name.
func (e *Engine) Adapters() []AdapterInfo {
	e.mu.Lock()
	list := make([]*entry, 0, len(e.adapters))
	for _, a := range e.adapters {
		list = append(list, a)
	}
	e.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	out := []AdapterInfo{e.base}
	for _, a := range list {
		out = append(out, a.info())
	}
	return out
}

// namesLocked lists the names a request may give, for messages.
func (e *Engine) namesLocked() string {
	names := []string{`"" (the base)`}
	var rest []string
	for n := range e.adapters {
		rest = append(rest, n)
	}
	sort.Strings(rest)
	for _, n := range rest {
		names = append(names, `"`+n+`"`)
	}
	return strings.Join(names, ", ")
}

// acquire finds the adapter a request names, pins it (it is not evicted
// until release) and makes it resident, reading it again from its path if
// it was evicted. The base is nil.
func (e *Engine) acquire(name string) (*entry, error) {
	if name == "" {
		return nil, nil
	}
	e.mu.Lock()
	a, ok := e.adapters[name]
	if !ok {
		names := e.namesLocked()
		e.mu.Unlock()
		return nil, errorf("adapter %q: %w (loaded: %s)", name, ErrUnknownAdapter, names)
	}
	e.clock++
	a.mu.Lock()
	a.pins++
	a.lastUsed = e.clock
	evicted := a.factors == nil && a.past == nil
	a.mu.Unlock()
	e.mu.Unlock()
	if evicted {
		err := e.reload(a)
		if err != nil {
			e.release(a)
			e.mu.Lock()
			closed := e.closed
			e.mu.Unlock()
			if closed { // the DoRA gains' weights may have closed under it
				return nil, errorf("adapter %q: %w", name, ErrClosed)
			}
			return nil, err
		}
	}
	return a, nil
}

// release unpins a.
func (e *Engine) release(a *entry) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.pins--
	a.mu.Unlock()
	e.mu.Lock()
	e.evictLocked()
	e.mu.Unlock()
}

// reload reads an evicted adapter again from its path (a.mu is held:
// e.mu must not be taken inside). A file whose
// content changed since it was loaded is refused: the name would serve
// something else than Adapters reports.
func (e *Engine) reload(a *entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.factors != nil || a.past != nil {
		return nil
	}
	ad, err := session.LoadAdapter(a.path)
	if err != nil {
		return errorf("reloading evicted adapter %q: %w", a.name, err)
	}
	hash, err := adapterHash(ad)
	if err != nil {
		return errorf("reloading evicted adapter %q: %w", a.name, err)
	}
	if hash != a.hash {
		return errorf("reloading evicted adapter %q: %s changed since it was loaded (hash %s, now %s): load it again", a.name, a.path, short(a.hash), short(hash))
	}
	b := &entry{name: a.name, path: a.path}
	if err := e.fill(b, ad); err != nil {
		return err
	}
	a.factors, a.past = b.factors, b.past
	a.reloads++ // counted into Stats by the caller: e.mu is not taken under a.mu
	e.log.Info("evicted adapter reloaded", "name", a.name)
	return nil
}

// evictLocked drops the tensors of the least recently used LoRA adapters
// beyond MaxCPULoRAs resident that no request holds. e.mu is held.
func (e *Engine) evictLocked() {
	type cand struct {
		a    *entry
		used int64
	}
	var res []cand
	for _, a := range e.adapters {
		a.mu.Lock()
		if a.kind == KindLoRA && a.factors != nil {
			res = append(res, cand{a, a.lastUsed})
		}
		a.mu.Unlock()
	}
	if len(res) <= e.opts.MaxCPULoRAs {
		return
	}
	sort.Slice(res, func(i, j int) bool { return res[i].used < res[j].used })
	over := len(res) - e.opts.MaxCPULoRAs
	for _, c := range res {
		if over == 0 {
			break
		}
		c.a.mu.Lock()
		if c.a.pins == 0 {
			c.a.factors = nil
			over--
			e.stats.Evicted++
			e.log.Info("adapter evicted", "name", c.a.name)
		}
		c.a.mu.Unlock()
	}
}

// adapterHash is the hex sha256 of ad's config (as JSON) and its tensors
// in name order: name, element type, shape and float32 data.
func adapterHash(ad *adapter.Adapter) (string, error) {
	h := sha256.New()
	cfg, err := json.Marshal(ad.Config())
	if err != nil {
		return "", err
	}
	h.Write(cfg)
	tensor := func(name string, t *adapter.Tensor) {
		if t == nil {
			return
		}
		h.Write([]byte{0})
		h.Write([]byte(name))
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], uint64(t.DType))
		h.Write(buf[:])
		for _, d := range t.Shape {
			binary.LittleEndian.PutUint64(buf[:], uint64(d))
			h.Write(buf[:])
		}
		data := make([]byte, 4*len(t.Data))
		for i, v := range t.Data {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		}
		h.Write(data)
	}
	for _, mod := range ad.Modules() {
		tensor(mod+".lora_A", ad.Weights[mod].A)
		tensor(mod+".lora_B", ad.Weights[mod].B)
		tensor(mod+".lora_magnitude_vector", ad.Weights[mod].Magnitude) // DoRA only
	}
	tensor("prompt_embeddings", ad.Prompt)
	if p := ad.Projection; p != nil {
		tensor("W1", p.W1)
		tensor("B1", p.B1)
		tensor("W2", p.W2)
		tensor("B2", p.B2)
	}
	for _, name := range slices.Sorted(maps.Keys(ad.Extra)) {
		tensor(name, ad.Extra[name])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// short returns the first 12 digits of a hash, for messages.
func short(h string) string { return h[:min(12, len(h))] }
