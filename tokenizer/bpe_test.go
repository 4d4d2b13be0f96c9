package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// bpeFile returns a tokenizer.json with a BPE model of vocab and merges
// (JSON values) and the model options given.
func bpeFile(vocab, merges, options string) string {
	return fmt.Sprintf(`{"version": "1.0", "model": {"type": "BPE", "vocab": %s, "merges": %s %s}}`, vocab, merges, options)
}

// TestBPEMerges checks the merge loop and the model's options on small
// vocabularies, each worked out by hand.
func TestBPEMerges(t *testing.T) {
	const abc = `{"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5, "aa": 6, "aaa": 7, "aaaa": 8}`
	tests := []struct {
		name, vocab, merges, options, text string
		want                               []int64
	}{
		{"lowest rank first", abc, `["b c", "a b", "a bc"]`, "", "abc", []int64{5}},
		{"lowest rank first, other order", abc, `["a b", "b c", "a bc"]`, "", "abc", []int64{3, 2}},
		{"leftmost of equal pairs", abc, `["a a"]`, "", "aaa", []int64{6, 0}},
		{"merged pairs merge again", abc, `["a a", "aa aa"]`, "", "aaaaa", []int64{8, 0}},
		{"a merge makes a new pair on the left", abc, `["b c", "a bc"]`, "", "abc", []int64{5}},
		{"pair form", abc, `[["a", "b"], ["ab", "c"]]`, "", "abc", []int64{5}},
		{"no merges", abc, `[]`, "", "cab", []int64{2, 0, 1}},
		{"ignore_merges takes a word in the vocabulary", abc, `["a b", "b c"]`, `, "ignore_merges": true`, "abc", []int64{5}},
		{"unknown characters dropped without unk", abc, `[]`, "", "axb", []int64{0, 1}},
		{"unk", `{"<unk>": 0, "a": 1}`, `[]`, `, "unk_token": "<unk>"`, "axya", []int64{1, 0, 0, 1}},
		{"fused unk", `{"<unk>": 0, "a": 1}`, `[]`, `, "unk_token": "<unk>", "fuse_unk": true`, "axya", []int64{1, 0, 1}},
		{"byte fallback", `{"<unk>": 0, "a": 1, "<0xC3>": 2, "<0xA9>": 3}`, `[]`, `, "unk_token": "<unk>", "byte_fallback": true`, "aé", []int64{1, 2, 3}},
		{"byte fallback missing a byte gives unk", `{"<unk>": 0, "a": 1, "<0xC3>": 2}`, `[]`, `, "unk_token": "<unk>", "byte_fallback": true`, "aé", []int64{1, 0}},
		{"continuing prefix", `{"a": 0, "##b": 1, "a##b": 2, "ab": 3}`, `["a ##b"]`, `, "continuing_subword_prefix": "##"`, "ab", []int64{3}},
		{"end of word suffix", `{"a": 0, "b</w>": 1, "ab</w>": 2}`, `["a b</w>"]`, `, "end_of_word_suffix": "</w>"`, "ab", []int64{2}},
		{"dropout is ignored", abc, `["a b"]`, `, "dropout": 0.5`, "ab", []int64{3}},
	}
	for i, tt := range tests {
		tok, err := Parse([]byte(bpeFile(tt.vocab, tt.merges, tt.options)), tt.name)
		if err != nil {
			t.Fatalf("test %d (%s): %v", i, tt.name, err)
		}
		got, err := tok.Encode(tt.text, false)
		if err != nil {
			t.Fatalf("test %d (%s): %v", i, tt.name, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d (%s, %q): got %v want %v", i, tt.name, tt.text, got, tt.want)
		}
	}
}

// naiveMerge is BPE the slow way, for checking mergeAll: again and again,
// merge the adjacent pair with the lowest rank, the leftmost of equal ones.
func naiveMerge(ids []uint32, merges map[uint64]mergeRule) []uint32 {
	ids = slices.Clone(ids)
	for {
		best, at := mergeRule{}, -1
		for i := 0; i+1 < len(ids); i++ {
			if m, ok := merges[pairKey(ids[i], ids[i+1])]; ok && (at < 0 || m.rank < best.rank) {
				best, at = m, i
			}
		}
		if at < 0 {
			return ids
		}
		ids = slices.Replace(ids, at, at+2, best.id)
	}
}

// TestMergeAllMatchesNaive checks the heap merge loop against naiveMerge
// with Llama's 61249 merge rules, on random texts built to make many
// competing and repeated pairs.
func TestMergeAllMatchesNaive(t *testing.T) {
	tok := loadLlama(t)
	m := tok.model.(*bpe)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabets := []string{"ab ", "aaab", "the quick brown fox jumps ", "..!!??", "▁▁a", "éèêë ", "ing tion ed s "}
	for i := 0; i < 300; i++ {
		alphabet := []rune(alphabets[i%len(alphabets)])
		var b strings.Builder
		b.WriteString("▁")
		for n := 1 + rng.IntN(120); n > 0; n-- {
			r := alphabet[rng.IntN(len(alphabet))]
			if r == ' ' {
				r = '▁'
			}
			b.WriteRune(r)
		}
		start, err := m.characters(b.String())
		if err != nil {
			t.Fatal(err)
		}
		syms := newSymbols(start)
		mergeAll(syms, m.merges)
		var got []uint32
		for k := int32(0); k >= 0; k = syms[k].next {
			got = append(got, syms[k].id)
		}
		if want := naiveMerge(start, m.merges); !slices.Equal(got, want) {
			t.Fatalf("text %q: got %v want %v", b.String(), got, want)
		}
	}
}
