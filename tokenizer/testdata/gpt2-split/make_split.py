#!/usr/bin/env python3
"""make_split.py: GPT-2's word split of texts, by Python's regex module.

The pattern is GPT-2's, as HF tokenizers' ByteLevel pre-tokenizer has it:
it needs lookahead and \\p{..} classes, which Python's `regex` module has
(Debian's python3-regex, 2026.5.9 here). The texts mix ASCII, letters of
several scripts, digits of several kinds, marks, emoji, punctuation and
runs of every kind of white space; random ones come from a fixed seed.

    python3 make_split.py > split.jsonl

Each line is {"text": ..., "pieces": [...]}.
"""
import json
import random

import regex

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

FIXED = [
    "Hello world", "Hello  world", "Hello   world", " leading", "trailing ", "trailing  ",
    "a\tb", "a \tb", "a\t b", "a\n\nb", "a \n b", "x\r\ny", "don't", "I'm we'll they've you're it'd",
    "'s", "'S", "''s", "'x", "rock'n'roll", "3.14", "1,000,000", "a1b2", " 123 abc", "½ ²³ Ⅻ",
    "héllo wörld", "e\u0301", "日本語 テキスト", "Привет, мир!", "مرحبا", "😀😀 😀", " 😀", "  😀",
    "$100 €20", "C++ && C#", "...", " ...", "a\u00a0b", "a\u2003\u2003b", "\u3000x", "end\n",
    "\n", " ", "  ", "\t\t", "", "a" + " " * 5 + "b", "tab\t\tend\t",
]

CHARS = (
    [chr(c) for c in range(0x20, 0x7F)] * 3
    + list("\t\n\r\x0b\x0c\u00a0\u2002\u2009\u3000\u0085")
    + list("éüñçßøæœÀÉ") + list("αβγδΩ") + list("абвгдЖ") + list("日本語中文")
    + list("٠١٢३४½²Ⅻ") + ["\u0301", "\u0308"] + list("😀👍🇺") + list("—–…“”‘’«»")
    + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"] * 3
)


def main():
    rng = random.Random(2026)
    texts = list(FIXED)
    for _ in range(300):
        texts.append("".join(rng.choice(CHARS) for _ in range(rng.randint(1, 40))))
    for t in texts:
        print(json.dumps({"text": t, "pieces": regex.findall(PATTERN, t)}, ensure_ascii=False))


main()
