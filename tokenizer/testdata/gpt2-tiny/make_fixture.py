#!/usr/bin/env python3
"""make_fixture.py: writes tokenizer.json, a tiny GPT-2 style tokenizer.

Made here by hand, not taken from a model: the vocabulary is GPT-2's
byte-level alphabet (the 256 byte characters, with ids in the order GPT-2
gives them: printable bytes first, so that "Ġ", the space, is 220, as in
GPT-2), then 12 merged tokens of 12 hand-chosen merge rules, and
<|endoftext|> as GPT-2 has it (special, normalized). The pre-tokenizer,
post-processor and decoder are ByteLevel, as in GPT-2's tokenizer.json.
The merges are written in the older "a b" string form.

    python3 make_fixture.py > tokenizer.json
"""
import json


def byte_chars():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ w", "o r", "l d", "Ġw or", "Ġwor ld", "Ġ a", "Ġ Ġ", "' s"]


def main():
    vocab = {c: i for i, c in enumerate(byte_chars())}
    for m in MERGES:
        a, b = m.split(" ")
        vocab[a + b] = len(vocab)
    eot = len(vocab)
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": MERGES},
    }
    print(json.dumps(tok, ensure_ascii=False, indent=1))


main()
