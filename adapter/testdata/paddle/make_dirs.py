#!/usr/bin/env python3
"""Writes PaddleNLP adapter directories and HF PEFT ones of the same weights.

    make_dirs.py [--protocol P] [--ordered] OUT

OUT/lora_paddle holds lora_config.json and lora_model_state.pdparams as
PaddleNLP's LoRAModel.save_pretrained writes them: pickle.dump of a dict
from state-dict names ("<module>.lora_A" [in, r], "<module>.lora_B"
[r, out], trainable biases, a trainable Linear weight in paddle's [in, out])
to numpy arrays, plus paddle.save's "StructuredToParameterName@@" table.
With --ordered the dict is an OrderedDict without the table, as the
merge_tensor_parallel save pickles it. Float16 weights are float16 arrays,
bfloat16 ones uint16 arrays of their bits, as paddle stores them.

OUT/prefix_paddle and OUT/prefix_proj_paddle hold prefix_config.json,
prefix_model_state.pdparams (the prefix encoder's nn.Sequential state
dict: "0.weight", and "1.weight", "1.bias", "3.weight", "3.bias" with the
projection) and pre_caches.npy, as PrefixModelForCausalLM.save_pretrained
writes them. PaddleNLP's table columns are [2, layers, kv_heads, head_dim]
(keys of every layer, then values); pre_caches.npy is the table reshaped
[P, 2, layers, heads, head_dim] and transposed [2, 1, 3, 0, 4].

OUT/*_hf hold the same weights in HF PEFT's layout: adapter_config.json and
adapter_model.safetensors (written by hand: torch's [out, in] Linear
layout, the prefix table's columns [layers, 2, kv_heads, head_dim]).

Needs python3 and numpy. The committed testdata/paddle/p4 was made with
    make_dirs.py --protocol 4 p4
"""
import argparse
import collections
import json
import os
import pickle
import struct

import numpy as np


def bf16_bits(x):
    return (np.asarray(x, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def grid(shape, start, step):
    n = int(np.prod(shape))
    return (start + step * np.arange(n, dtype=np.float64)).reshape(shape)


def write_safetensors(path, tensors):
    """tensors: name -> (safetensors dtype, numpy array in that dtype's bytes)."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        dt, arr = tensors[name]
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def save_state(path, state, args):
    if args.ordered:
        d = collections.OrderedDict(state)
    else:
        d = dict(state)
        d["StructuredToParameterName@@"] = {k: "param_%d.w_0" % i for i, k in enumerate(state)}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=args.protocol)


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True))


def lora(out, args):
    # module -> (in, out, dtype); r = 2
    modules = collections.OrderedDict([
        ("llama.layers.0.self_attn.q_proj", (6, 4, "float32")),
        ("llama.layers.0.self_attn.v_proj", (6, 2, "float16")),
        ("llama.layers.1.mlp.up_proj", (6, 3, "bfloat16")),
    ])
    state, hf = collections.OrderedDict(), {}
    for i, (m, (fin, fout, dt)) in enumerate(modules.items()):
        a = grid((fin, 2), -1 + i, 0.125)      # exact in float16 and bfloat16
        b = grid((2, fout), 0.5 - i, -0.0625)
        for key, x, hfkey in ((".lora_A", a, ".lora_A.weight"), (".lora_B", b, ".lora_B.weight")):
            if dt == "float32":
                state[m + key], hf["base_model.model." + m + hfkey] = x.astype(np.float32), ("F32", x.T.astype(np.float32))
            elif dt == "float16":
                state[m + key], hf["base_model.model." + m + hfkey] = x.astype(np.float16), ("F16", x.T.astype(np.float16))
            else:
                state[m + key], hf["base_model.model." + m + hfkey] = bf16_bits(x), ("BF16", bf16_bits(x.T))
    bias = grid((4,), 0.25, 0.25).astype(np.float32)
    state["llama.layers.0.self_attn.q_proj.bias"] = bias
    hf["base_model.model.llama.layers.0.self_attn.q_proj.bias"] = ("F32", bias)
    w = grid((6, 4), -3, 0.25).astype(np.float32)  # paddle's nn.Linear weight [in, out]
    state["llama.layers.0.self_attn.q_proj.weight"] = w
    hf["base_model.model.llama.layers.0.self_attn.q_proj.weight"] = ("F32", np.ascontiguousarray(w.T))

    targets = [".*q_proj", ".*v_proj", ".*up_proj"]
    d = os.path.join(out, "lora_paddle")
    os.makedirs(d, exist_ok=True)
    save_state(os.path.join(d, "lora_model_state.pdparams"), state, args)
    write_json(os.path.join(d, "lora_config.json"), {
        "base_model_name_or_path": "llama-tiny", "do_qat": False, "dtype": "float32", "enable_lora_list": None,
        "head_dim": None, "lora_alpha": 4, "lora_dropout": 0.0, "lora_plus_scale": 1.0, "merge_weights": False,
        "r": 2, "rslora": False, "scaling": 2.0, "target_modules": targets, "tensor_parallel_degree": -1,
        "trainable_bias": "lora", "trainable_modules": [".*q_proj"], "use_quick_lora": False,
    })
    d = os.path.join(out, "lora_hf")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), hf)
    write_json(os.path.join(d, "adapter_config.json"), {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "lora_dropout": 0.0,
        "target_modules": "|".join("(?:%s)" % t for t in targets), "bias": "lora_only",
        "modules_to_save": ["llama.layers.0.self_attn.q_proj"], "base_model_name_or_path": "llama-tiny",
    })


def prefix(out, args, projection):
    P, L, heads, hidden = 3, 2, 4, 8
    kv = 2 if not projection else heads  # PaddleNLP's projection takes kv_heads*head_dim inputs
    D = hidden // heads
    width = L * 2 * kv * D
    paddle_cfg = {
        "dtype": "float32", "hidden_size": hidden, "multi_query_group_num": kv if kv != heads else None,
        "num_attention_heads": heads, "num_hidden_layers": L, "num_prefix_tokens": P, "prefix_dropout": 0.0,
        "prefix_projection": projection, "prefix_projection_hidden_size": 5 if projection else None,
        "tensor_parallel_degree": -1,
    }
    # HF's token_dim and num_attention_heads count key/value heads (GQA)
    hf_cfg = {"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": P,
              "token_dim": kv * D, "num_attention_heads": kv, "num_layers": L,
              "num_transformer_submodules": 1, "prefix_projection": projection,
              "encoder_hidden_size": 5 if projection else None}
    state, hf = collections.OrderedDict(), {}
    if not projection:
        t5 = grid((P, L, 2, kv, D), -2, 0.125).astype(np.float32)   # [P, layer, key/value, head, d]
        state["0.weight"] = np.ascontiguousarray(t5.transpose(0, 2, 1, 3, 4).reshape(P, width))
        hf["prompt_embeddings"] = ("F32", t5.reshape(P, width))
        table = state["0.weight"]
    else:
        ph = 5
        e = grid((P, hidden), -1, 0.0625).astype(np.float32)
        w1 = grid((hidden, ph), -1, 0.05).astype(np.float32)
        b1 = grid((ph,), 0, 0.5).astype(np.float32)
        w2 = grid((ph, L, 2, kv, D), 1, -0.03125).astype(np.float32)
        b2 = grid((L, 2, kv, D), 0, 0.25).astype(np.float32)
        state["0.weight"], state["1.weight"], state["1.bias"] = e, w1, b1
        state["3.weight"] = np.ascontiguousarray(w2.transpose(0, 2, 1, 3, 4).reshape(ph, width))
        state["3.bias"] = np.ascontiguousarray(b2.transpose(1, 0, 2, 3).reshape(width))
        hf["prompt_embeddings"] = ("F32", e)
        hf["prefix_encoder.transform.0.weight"] = ("F32", np.ascontiguousarray(w1.T))
        hf["prefix_encoder.transform.0.bias"] = ("F32", b1)
        hf["prefix_encoder.transform.2.weight"] = ("F32", np.ascontiguousarray(w2.reshape(ph, width).T))
        hf["prefix_encoder.transform.2.bias"] = ("F32", b2.reshape(width))
        table = np.tanh(e @ w1 + b1) @ state["3.weight"] + state["3.bias"]
    # PrefixModelForCausalLM.save_pretrained's past key values
    caches = table.reshape(P, 2, L, kv, D).transpose(2, 1, 3, 0, 4).astype(np.float32)
    name = "prefix_proj" if projection else "prefix"
    d = os.path.join(out, name + "_paddle")
    os.makedirs(d, exist_ok=True)
    save_state(os.path.join(d, "prefix_model_state.pdparams"), state, args)
    write_json(os.path.join(d, "prefix_config.json"), paddle_cfg)
    np.save(os.path.join(d, "pre_caches.npy"), caches)
    d = os.path.join(out, name + "_hf")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), hf)
    write_json(os.path.join(d, "adapter_config.json"), hf_cfg)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", type=int, default=4)
    p.add_argument("--ordered", action="store_true")
    p.add_argument("out")
    args = p.parse_args()
    lora(args.out, args)
    prefix(args.out, args, False)
    prefix(args.out, args, True)


if __name__ == "__main__":
    main()
