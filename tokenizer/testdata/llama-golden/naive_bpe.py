#!/usr/bin/env python3
"""naive_bpe.py: an independent reference for the LLaMA tokenizer's ids.

It encodes the texts of golden.jsonl with the shared tiny LLaMA
tokenizer.json the slow, classic way: the normalizer's Prepend("▁") and
Replace(" " -> "▁"), a token per character (its UTF-8 bytes' <0xXX> tokens
when the vocabulary lacks it: byte fallback), then, again and again, merge
the adjacent pair with the lowest merge rank, the leftmost of equal ones,
until no pair has a merge. Texts that hold an added token (<unk>, <s>,
</s>), which the tokenizer splits out first, get null. It is quadratic; the
27k-character text takes minutes.

    python3 naive_bpe.py ../../../../shared/models/tiny-llama-genai-fp16/tokenizer.json \
        golden.jsonl > naive.jsonl

Each output line is {"ids": [...]} or {"ids": null}, one per golden line.
"""
import json
import sys


def main():
    d = json.load(open(sys.argv[1], encoding="utf-8"))
    m = d["model"]
    vocab = m["vocab"]
    ranks = {}
    for i, mg in enumerate(m["merges"]):
        a, b = mg if isinstance(mg, list) else mg.split(" ")
        ranks[(a, b)] = i
    added = [t["content"] for t in d["added_tokens"]]

    def encode(text):
        if any(a in text for a in added):
            return None
        if text == "":
            return []
        s = "\u2581" + text.replace(" ", "\u2581")
        syms = []
        for ch in s:
            if ch in vocab:
                syms.append(ch)
            else:
                syms.extend("<0x%02X>" % b for b in ch.encode("utf-8"))
        while True:
            best = None
            for i in range(len(syms) - 1):
                r = ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        return [vocab[t] for t in syms]

    for line in open(sys.argv[2], encoding="utf-8"):
        print(json.dumps({"ids": encode(json.loads(line)["text"])}))


main()
