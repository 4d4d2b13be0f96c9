package adapter

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// TestRealONNXAdapter reads the shared file from onnxruntime-genai and
// checks what it holds: two float32 parameters of a fused QKV projection
// in graph layout, A [in 3072, r 64] and B [r 64, out 9216 = 3·3072].
func TestRealONNXAdapter(t *testing.T) {
	f, err := ReadONNXAdapter(realAdapterPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if f.Layout != LayoutGenAILegacy || f.FormatVersion != 1 || f.AdapterVersion != 0 || f.ModelVersion != 0 {
		t.Errorf("got layout %s versions %d/%d/%d want genai-legacy 1/0/0", f.Layout, f.FormatVersion, f.AdapterVersion, f.ModelVersion)
	}
	if !f.UnalignedRawData {
		t.Errorf("got UnalignedRawData false: the file's raw data starts at offsets ≡ 4 mod 8")
	}
	tests := []struct {
		name        string
		dims        []int64
		first, last []float32
	}{
		{"model.layers.0.attn.qkv_proj.lora_A.weight", []int64{3072, 64},
			[]float32{0.003241537604480982, -0.012099905870854855, 0.0009728529257699847, 0.014397761784493923},
			[]float32{-0.009940585121512413, -0.012763812206685543}},
		{"model.layers.0.attn.qkv_proj.lora_B.weight", []int64{64, 9216},
			[]float32{-0.00030397623777389526, 0.002553727477788925, -0.018757425248622894, -0.012913297861814499},
			[]float32{0.010681681334972382, 0.024915438145399094}},
	}
	if len(f.Params) != len(tests) {
		t.Fatalf("got %d parameters want %d", len(f.Params), len(tests))
	}
	for i, test := range tests {
		p := &f.Params[i]
		if p.Name != test.name || !equalShape(p.Dims, test.dims) || p.DataType != 1 {
			t.Errorf("parameter %d: got %s %v type %d want %s %v type 1 (float)", i, p.Name, p.Dims, p.DataType, test.name, test.dims)
			continue
		}
		x, err := p.Tensor()
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range test.first {
			if x.Data[j] != v {
				t.Errorf("%s[%d]: got %v want %v", p.Name, j, x.Data[j], v)
			}
		}
		for j, v := range test.last {
			k := len(x.Data) - len(test.last) + j
			if x.Data[k] != v {
				t.Errorf("%s[%d]: got %v want %v", p.Name, k, x.Data[k], v)
			}
		}
	}
	a, err := f.ToAdapter(nil)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := a.Weights["model.layers.0.attn.qkv_proj"]
	if !ok || len(a.Weights) != 1 || len(a.Extra) != 0 {
		t.Fatalf("got modules %v and extras %d want one module model.layers.0.attn.qkv_proj", a.Modules(), len(a.Extra))
	}
	if a.LoRA.R != 64 || a.LoRA.Scaling() != 1 || !equalShape(w.A.Shape, []int64{3072, 64}) || !equalShape(w.B.Shape, []int64{64, 9216}) {
		t.Errorf("got r %d scaling %v A %v B %v want r 64 scaling 1 A [3072 64] B [64 9216]", a.LoRA.R, a.LoRA.Scaling(), w.A.Shape, w.B.Shape)
	}
	if got := a.LoRA.MatchTarget("model.layers.0.attn.qkv_proj"); got != 0 {
		t.Errorf("derived targets %v do not match the module", a.LoRA.TargetModules)
	}
}

// TestRealONNXAdapterByteRoundTrip writes the real file back: the bytes
// must be identical, and converting it to the ORT layout must keep its
// parameters.
func TestRealONNXAdapterByteRoundTrip(t *testing.T) {
	orig, err := os.ReadFile(realAdapterPath(t))
	if err != nil {
		t.Fatal(err)
	}
	f, err := DecodeONNXAdapter(orig)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "copy.onnx_adapter")
	if err := WriteONNXAdapter(path, f); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, orig) {
		t.Fatalf("written file differs: %s", diff(orig, got))
	}
	f.Layout, f.UnalignedRawData = LayoutORT, false
	ort, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(ort[4:8]) != "TORT" {
		t.Errorf("got identifier %q want TORT", ort[4:8])
	}
	back, err := DecodeONNXAdapter(ort)
	if err != nil {
		t.Fatal(err)
	}
	if back.Layout != LayoutORT || back.UnalignedRawData || back.FormatVersion != 1 {
		t.Errorf("got layout %s unaligned %v format %d want ort false 1", back.Layout, back.UnalignedRawData, back.FormatVersion)
	}
	for i := range f.Params {
		if p, q := f.Params[i], back.Params[i]; p.Name != q.Name || !equalShape(p.Dims, q.Dims) || p.DataType != q.DataType || !bytes.Equal(p.RawData, q.RawData) {
			t.Errorf("parameter %d changed in the ORT layout", i)
		}
	}
}

// TestEncodeMatchesCppBuilder compares our builder with files made by the
// C++ FlatBufferBuilder (see testdata/fbref/README.md).
func TestEncodeMatchesCppBuilder(t *testing.T) {
	bs := func(n, seed int) []byte {
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(i*7 + seed)
		}
		return v
	}
	params := []ONNXParam{
		{"m.lora_A.weight", []int64{3, 2}, 1, bs(24, 1)},
		{"m.lora_B.weight", []int64{2, 5}, 10, bs(20, 2)},
		{"scalar", []int64{}, 7, bs(8, 3)},
		{"empty", []int64{0, 4}, 1, []byte{}},
		{"odd.name.x", []int64{5}, 3, bs(5, 4)},
	}
	tests := []struct {
		ref string
		f   ONNXAdapterFile
	}{
		{"ref_ort_aligned.bin", ONNXAdapterFile{Layout: LayoutORT, FormatVersion: 1, AdapterVersion: 3}},
		{"ref_ort_unaligned.bin", ONNXAdapterFile{Layout: LayoutORT, FormatVersion: 1, AdapterVersion: 3, UnalignedRawData: true}},
		{"ref_legacy.bin", ONNXAdapterFile{Layout: LayoutGenAILegacy, FormatVersion: 1, UnalignedRawData: true}},
	}
	for _, test := range tests {
		want, err := os.ReadFile(filepath.Join("testdata", "fbref", test.ref))
		if err != nil {
			t.Fatal(err)
		}
		test.f.Params = params
		got, err := test.f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %s", test.ref, diff(want, got))
		}
		d, err := DecodeONNXAdapter(want)
		if err != nil {
			t.Fatalf("%s: %v", test.ref, err)
		}
		if d.Layout != test.f.Layout || d.UnalignedRawData != test.f.UnalignedRawData || d.AdapterVersion != test.f.AdapterVersion || len(d.Params) != len(params) {
			t.Errorf("%s: decoded layout %s unaligned %v adapter version %d, %d params", test.ref, d.Layout, d.UnalignedRawData, d.AdapterVersion, len(d.Params))
		}
	}
}

func TestONNXAdapterAdapterRoundTrip(t *testing.T) {
	a := sampleLoRA()
	a.Extra = map[string]*Tensor{"quant.scale": {DType: dtype.Int8, Shape: []int64{2}, Data: []float32{-3, 4}}}
	for _, layout := range []ONNXAdapterLayout{LayoutORT, LayoutGenAILegacy, LayoutORTPreview} {
		f, err := NewONNXAdapterFile(a)
		if err != nil {
			t.Fatal(err)
		}
		f.Layout = layout
		enc, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := DecodeONNXAdapter(enc)
		if err != nil {
			t.Fatalf("%s: %v", layout, err)
		}
		if dec.Layout != layout {
			t.Errorf("got layout %s want %s", dec.Layout, layout)
		}
		again, _ := dec.Encode()
		if !bytes.Equal(again, enc) {
			t.Errorf("%s: decode then encode changed the bytes: %s", layout, diff(enc, again))
		}
		b, err := dec.ToAdapter(a.LoRA)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range a.Modules() {
			if err := sameTensor(a.Weights[m].A, b.Weights[m].A); err != nil {
				t.Errorf("%s: %s A: %v", layout, m, err)
			}
			if err := sameTensor(a.Weights[m].B, b.Weights[m].B); err != nil {
				t.Errorf("%s: %s B: %v", layout, m, err)
			}
		}
		if err := sameTensor(a.Extra["quant.scale"], b.Extra["quant.scale"]); err != nil {
			t.Errorf("%s: extra: %v", layout, err)
		}
	}
}

func TestONNXAdapterGolden(t *testing.T) {
	f, err := NewONNXAdapterFile(sampleLoRA())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "small.onnx_adapter", enc)
	names := []string{
		"model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.0.self_attn.q_proj.lora_B.weight",
		"model.layers.0.self_attn.v_proj.lora_A.weight", "model.layers.0.self_attn.v_proj.lora_B.weight",
		"lm_head.weight", "model.layers.0.self_attn.q_proj.bias",
	}
	for i, want := range names {
		if f.Params[i].Name != want {
			t.Errorf("parameter %d: got %s want %s", i, f.Params[i].Name, want)
		}
	}
	if p := f.Param("model.layers.0.self_attn.v_proj.lora_A.weight"); p == nil || p.DataType != 10 || !equalShape(p.Dims, []int64{3, 2}) {
		t.Errorf("v_proj lora_A: got %+v want float16 (10) [3 2]", p)
	}
}

func TestToAdapterDerivesRankPattern(t *testing.T) {
	pa, _ := NewONNXParam("x.lora_A.weight", Zeros(4, 2))
	pb, _ := NewONNXParam("x.lora_B.weight", Zeros(2, 3))
	qa, _ := NewONNXParam("y.lora_A.weight", Zeros(4, 5))
	qb, _ := NewONNXParam("y.lora_B.weight", Zeros(5, 3))
	f := &ONNXAdapterFile{FormatVersion: 1, Params: []ONNXParam{pa, pb, qa, qb}}
	a, err := f.ToAdapter(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.LoRA.R != 2 || a.LoRA.RankFor("y") != 5 || a.LoRA.ScalingFor("y") != 1 || a.LoRA.ScalingFor("x") != 1 {
		t.Errorf("got r %d, r(y) %d, scaling(x) %v, scaling(y) %v want 2 5 1 1", a.LoRA.R, a.LoRA.RankFor("y"), a.LoRA.ScalingFor("x"), a.LoRA.ScalingFor("y"))
	}
}

func TestONNXAdapterErrors(t *testing.T) {
	good, err := (&ONNXAdapterFile{FormatVersion: 1, Params: []ONNXParam{{"w", []int64{2}, 1, make([]byte, 8)}}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	corrupt := func(at int, b ...byte) []byte {
		c := append([]byte{}, good...)
		copy(c[at:], b)
		return c
	}
	tests := []struct {
		reason string
		data   []byte
		want   string
	}{
		{"too short", good[:8], "too short for a flatbuffer"},
		{"bad identifier", corrupt(4, 'O', 'N', 'N', 'X'), `file identifier is "ONNX", want "TORT" or "GAIL"`},
		{"root past the end", corrupt(0, 0xff, 0xff, 0, 0), "root: offset at 0 points to 65535"},
		{"truncated", good[:len(good)-12], "past the end"},
	}
	for i, test := range tests {
		_, err := DecodeONNXAdapter(test.data)
		if err := errContains(err, test.want); err != nil {
			t.Errorf("test %d (%s): %v", i, test.reason, err)
		}
	}

	params := func(ps ...ONNXParam) *ONNXAdapterFile { return &ONNXAdapterFile{FormatVersion: 1, Params: ps} }
	encodeTests := []struct {
		reason string
		f      *ONNXAdapterFile
		want   string
	}{
		{"size mismatch", params(ONNXParam{"w", []int64{3}, 1, make([]byte, 8)}), `"w": .onnx_adapter: dims [3] of data_type 1 need 12 bytes, raw_data has 8`},
		{"string type", params(ONNXParam{"s", []int64{1}, 8, nil}), "unsupported data_type 8"},
		{"no name", params(ONNXParam{"", []int64{0}, 1, nil}), "parameter 0 has no name"},
		{"duplicate", params(ONNXParam{"w", nil, 2, []byte{1}}, ONNXParam{"w", nil, 2, []byte{1}}), `"w": .onnx_adapter: duplicate parameter name`},
		{"legacy versions", &ONNXAdapterFile{Layout: LayoutGenAILegacy, ModelVersion: 2}, "cannot store adapter_version 0 and model_version 2"},
	}
	for i, test := range encodeTests {
		_, err := test.f.Encode()
		if err := errContains(err, test.want); err != nil {
			t.Errorf("encode test %d (%s): %v", i, test.reason, err)
		}
	}

	a := func(ps ...ONNXParam) error { _, err := params(ps...).ToAdapter(nil); return err }
	pa, _ := NewONNXParam("m.lora_A.weight", Zeros(4, 2))
	pb, _ := NewONNXParam("m.lora_B.weight", Zeros(3, 4))
	pb2, _ := NewONNXParam("m.lora_B.weight", Zeros(2, 4))
	p3, _ := NewONNXParam("m.lora_A.weight", Zeros(4, 2, 1))
	bf, _ := NewONNXParam("other", Zeros(2))
	adapterTests := []struct {
		reason string
		err    error
		want   string
	}{
		{"A without B", a(pa), `"m.lora_A.weight": lora_A without m.lora_B.weight`},
		{"B without A", a(pb2), `"m.lora_B.weight": lora_B without m.lora_A.weight`},
		{"rank mismatch", a(pa, pb), `"m": lora_B is [3 4], want [r, out] with r 2`},
		{"3-D", a(p3, pb2), "must both be 2-D"},
		{"no LoRA", a(bf), "holds no LoRA parameters"},
		{"ok", a(pa, pb2, bf), ""},
	}
	for i, test := range adapterTests {
		if err := errContains(test.err, test.want); err != nil {
			t.Errorf("adapter test %d (%s): %v", i, test.reason, err)
		}
	}
}

func TestReadONNXAdapterNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.onnx_adapter")
	if err := os.WriteFile(path, []byte("not a flatbuffer at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadONNXAdapter(path)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.File != path {
		t.Errorf("got %v want a *FormatError naming %s", err, path)
	}
	if _, err := Load(path); err == nil {
		t.Errorf("Load of a bad file: got no error")
	}
}

// TestWriteORTCheckFiles writes the files testdata/ortcheck/run.sh feeds to
// ONNX Runtime. It runs only when ORTCHECK_DIR is set.
func TestWriteORTCheckFiles(t *testing.T) {
	dir := os.Getenv("ORTCHECK_DIR")
	if dir == "" {
		t.Skip("ORTCHECK_DIR is not set: run testdata/ortcheck/run.sh to check against ONNX Runtime")
	}
	pa, _ := NewONNXParam("lora_param_a", NewTensor([]int64{4, 2}, []float32{1, 0, 0, 1, 1, 1, 0, 2}))
	pb, _ := NewONNXParam("lora_param_b", NewTensor([]int64{2, 4}, []float32{1, 2, 3, 4, 10, 20, 30, 40}))
	for name, f := range map[string]ONNXAdapterFile{
		"1_ort.onnx_adapter":           {Layout: LayoutORT, FormatVersion: 1, AdapterVersion: 3, ModelVersion: 2},
		"2_ort_unaligned.onnx_adapter": {Layout: LayoutORT, FormatVersion: 1, UnalignedRawData: true},
		"3_gail_legacy.onnx_adapter":   {Layout: LayoutGenAILegacy, FormatVersion: 1},
		"4_gail_preview.onnx_adapter":  {Layout: LayoutORTPreview, FormatVersion: 1},
	} {
		f.Params = []ONNXParam{pa, pb}
		if err := WriteONNXAdapter(filepath.Join(dir, name), &f); err != nil {
			t.Fatal(err)
		}
	}
}

// TestONNXAdapterSharedData: a file whose parameters all point at one
// data vector is refused before any copy is made (issue 16 M2: 2,000
// parameters at one 8 MB vector made merge --adapter die at 4.7 GB).
func TestONNXAdapterSharedData(t *testing.T) {
	raw := make([]byte, 64<<10)
	b := newFBBuilder(len(raw) + 64<<10)
	b.preAlign(len(raw), 8)
	vec := b.createVector(raw, len(raw), 1, 1)
	var offs []int
	for i := range 100 {
		name := b.createString("p" + strconv.Itoa(i))
		dims := b.createInt64Vector([]int64{int64(len(raw) / 4)})
		b.startTable()
		b.addOffset(3, vec)
		b.addInt32(2, 1, 0)
		b.addOffset(1, dims)
		b.addOffset(0, name)
		offs = append(offs, b.endTable())
	}
	params := b.createOffsetVector(offs)
	b.startTable()
	b.addOffset(3, params)
	b.addInt32(2, 0, 0)
	b.addInt32(1, 0, 0)
	b.addInt32(0, 1, 0)
	data := b.finish(b.endTable(), LayoutORT.identifier())
	_, err := DecodeONNXAdapter(data)
	if err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("100 parameters sharing one vector: got %v, want a refusal", err)
	}
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Key == "" {
		t.Errorf("the error names no parameter: %v", err)
	}
}
