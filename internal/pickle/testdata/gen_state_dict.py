#!/usr/bin/env python3
"""Writes a pickled state dict the way paddle.save does, and its manifest.

    gen_state_dict.py [--protocol P] [--ordered] [--full] OUT.pkl MANIFEST.json

The pickle is pickle.dump(d, f, protocol=P) of a dict (an OrderedDict with
--ordered) from names to numpy arrays, with the extra keys paddle.save adds
("StructuredToParameterName@@", and "UnpackBigParamInfor@@" as protocol 2
and 3 write it for arrays over 1 GiB) and a list of plain values. --full
adds what only shows at size: an array over 64 KiB (written outside protocol
4's frames), 1100 arrays (more than one SETITEMS batch, and LONG_BINPUT in
protocols 2 and 3) and one array under two keys (a memo reference).

The manifest gives, per array, its dtype, shape and the sha256 of its
elements in C order, little-endian, so that a reader can be checked without
numpy. Needs python3 and numpy (Debian: python3-numpy).

The committed fixtures were made with
    gen_state_dict.py --protocol 2 small.p2.pkl small.p2.json
    gen_state_dict.py --protocol 4 --ordered small.p4.pkl small.p4.json
"""
import argparse
import collections
import hashlib
import json
import pickle

import numpy as np


def arrays(full):
    a = collections.OrderedDict()
    a["llama.layers.0.self_attn.q_proj.lora_A"] = (np.arange(12, dtype=np.float32).reshape(3, 4) * 0.25 - 1)
    a["llama.layers.0.self_attn.q_proj.lora_B"] = np.zeros((4, 3), dtype=np.float32)
    a["f16"] = (np.arange(5, dtype=np.float16) - 2) / np.float16(3)
    a["f64"] = np.linspace(-1, 1, 7)
    a["i8"] = np.array([-128, -1, 0, 127], dtype=np.int8)
    a["i16"] = np.array([-32768, 7, 32767], dtype=np.int16)
    a["i32"] = np.array([[-(2**31), 5], [6, 2**31 - 1]], dtype=np.int32)
    a["i64"] = np.array([-(2**40), 0, 2**62], dtype=np.int64)
    a["u8"] = np.array([0, 1, 255], dtype=np.uint8)
    a["u16"] = np.array([0, 65535], dtype=np.uint16)
    a["u32"] = np.array([2**32 - 1], dtype=np.uint32)
    a["u64"] = np.array([2**63, 1], dtype=np.uint64)
    a["bool"] = np.array([[True, False, True]])
    # paddle keeps bfloat16 as the uint16 of its bits
    a["bf16_bits"] = (np.array([1.0, -2.5, 3.140625], dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    a["fortran"] = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    a["big_endian_f4"] = (np.arange(5) - 2).astype(">f4")
    a["big_endian_i8"] = np.array([-(2**40), 3], dtype=">i8")
    a["scalar"] = np.array(3.5)
    a["empty"] = np.zeros((0, 3), dtype=np.float32)
    if full:
        a["large"] = np.arange(70000, dtype=np.float32)
        for i in range(1100):
            a["many.%04d" % i] = np.array([i, -i], dtype=np.int32)
        shared = np.arange(3, dtype=np.float64)
        a["shared.a"] = shared
        a["shared.b"] = shared
    return a


def build(ordered, full):
    d = collections.OrderedDict() if ordered else {}
    arr = arrays(full)
    for k, v in arr.items():
        d[k] = v
    d["meta"] = [1, -5, 2**40, -(2**63), 1.5, None, True, False, "str", b"\x00\xff", b"", (2, 3)]
    d["UnpackBigParamInfor@@"] = {"x": {"OriginShape": (2, 3), "slices": ["x@@.0", "x@@.1"]}}
    d["StructuredToParameterName@@"] = {k: "param_%d.w_0" % i for i, k in enumerate(arr)}
    return d


def manifest(d):
    out = {"type": type(d).__name__, "keys": list(d), "arrays": {}}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            le = np.ascontiguousarray(v.astype(v.dtype.newbyteorder("<")))
            out["arrays"][k] = {
                "dtype": v.dtype.name,
                "shape": list(v.shape),
                "sha256": hashlib.sha256(le.tobytes()).hexdigest(),
            }
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", type=int, default=4)
    p.add_argument("--ordered", action="store_true")
    p.add_argument("--full", action="store_true")
    p.add_argument("out")
    p.add_argument("manifest")
    args = p.parse_args()
    d = build(args.ordered, args.full)
    with open(args.out, "wb") as f:
        pickle.dump(d, f, protocol=args.protocol)
    with open(args.manifest, "w") as f:
        json.dump(manifest(d), f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
