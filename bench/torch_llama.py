#!/usr/bin/python3
"""torch_llama.py: the PyTorch side of peftonnx's benchmark.

It runs, in PyTorch, the LLaMA-style decoder that models.Llama builds in Go,
from the weights the Go harness exports, with HuggingFace PEFT's LoRA math:

    y = x W + lora_B(lora_A(dropout(x))) * alpha / r

and HF Trainer's training step: the causal LM loss (shift inside, labels
-100 ignored, mean), backward, clip_grad_norm_(1.0), torch.optim.AdamW
(betas (0.9, 0.999), eps 1e-8, weight decay 0) and a linear schedule.

The math follows models/llama.go op for op, so that a step can be compared
with peftonnx's to float32 rounding:
  - RMSNorm: w * (x / sqrt(mean(x^2) + eps))  (Div by Sqrt, as the graph)
  - RoPE: rotate-half, inv_freq = theta^(-2j/d) in float64 rounded to
    float32, cos/sin of [freqs, freqs] in float32
  - GQA: repeat_kv (unsqueeze, expand, reshape)
  - attention: softmax(q k^T * (1/sqrt(d)) + mask) v, mask 0 or
    finfo(float32).min from causality and attention_mask
  - MLP: down(silu(gate(x)) * up(x)), silu(g) = g * sigmoid(g)
  - lm_head without bias

Weights arrive in the ONNX layout ([in, out] for every linear layer); they
are transposed once into nn.Linear's [out, in], as HF's checkpoints hold
them, so that the timed code is what HF runs.

Usage:
  torch_llama.py worker --dir DIR --mode MODE [--batch B --seq S --threads T]
      Loads the model and answers one command per line on stdin with one
      JSON line on stdout: "step" runs one training step (train-lora,
      train-full) or one forward pass (forward-base, forward-lora,
      forward-merged); "stats" reports memory; "quit" ends.
  torch_llama.py profile --dir DIR [--mode train-lora] [--warmup N]
      Runs warmup steps, then one step under torch's profiler, and prints
      the ops that took the most time as JSON.
  torch_llama.py parity --dir DIR --steps N --out FILE.safetensors [--dtype float64]
      Trains the adapter N steps from the exported initial A and B on the
      exported batches and writes the loss of every step and the final
      adapter weights (ONNX layout: A [in, r], B [r, out]); in float64 it
      is the reference a failed parity check is diagnosed against.
  torch_llama.py grads --dir DIR --out FILE.safetensors [--dtype float64]
      Writes the adapter gradients of step 1, before clipping.
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- files

_ST_DTYPES = {
    "F32": (np.float32, torch.float32),
    "F64": (np.float64, torch.float64),
    "I64": (np.int64, torch.int64),
    "I32": (np.int32, torch.int32),
}


def read_safetensors(path):
    """Returns {name: tensor} for a safetensors file (F32, F64, I64, I32)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        np_dt, _ = _ST_DTYPES[e["dtype"]]
        begin, end = e["data_offsets"]
        arr = np.frombuffer(data, dtype=np_dt, count=(end - begin) // np.dtype(np_dt).itemsize,
                            offset=base + begin).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: float32 tensor} as a safetensors file."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().to(torch.float32).numpy()
        b = t.tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def cpu_s():
    # User and system time of every thread of the process.
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mb():
    """VmHWM, the peak resident set. (ru_maxrss would not do: Linux carries
    it across execve, so the worker would inherit the driver's peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


# ---------------------------------------------------------------- model


class LoRALinear(nn.Module):
    """HF PEFT's lora.Linear: base_layer(x) + lora_B(lora_A(dropout(x))) * scaling."""

    def __init__(self, base, r, alpha, a_init=None, b_init=None, dropout=0.0):
        super().__init__()
        self.base_layer = base
        in_f, out_f = base.in_features, base.out_features
        self.lora_A = nn.Linear(in_f, r, bias=False)
        self.lora_B = nn.Linear(r, out_f, bias=False)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / r
        with torch.no_grad():
            if a_init is not None:  # ONNX layout [in, r] -> [r, in]
                self.lora_A.weight.copy_(a_init.t())
            else:
                nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            if b_init is not None:  # [r, out] -> [out, r]
                self.lora_B.weight.copy_(b_init.t())
            else:
                nn.init.zeros_(self.lora_B.weight)
        self.merged = False

    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def merge(self):
        """Folds the adapter into the base weight, as PEFT's merge()."""
        with torch.no_grad():
            delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
            self.base_layer.weight += delta
        self.merged = True


def linear_from(w_in_out, requires_grad):
    """An nn.Linear without bias holding the ONNX weight [in, out]."""
    in_f, out_f = w_in_out.shape
    lin = nn.Linear(in_f, out_f, bias=False)
    with torch.no_grad():
        lin.weight = nn.Parameter(w_in_out.t().contiguous(), requires_grad=requires_grad)
    return lin


class RMSNorm(nn.Module):
    def __init__(self, weight, eps, requires_grad):
        super().__init__()
        self.weight = nn.Parameter(weight.clone(), requires_grad=requires_grad)
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x / torch.sqrt(var + self.eps))


class DecoderLayer(nn.Module):
    def __init__(self, cfg, w, i, trainable):
        super().__init__()
        p = "model.layers.%d." % i
        self.heads, self.kv_heads = cfg["heads"], cfg["kv_heads"]
        self.head_dim = cfg["hidden"] // cfg["heads"]
        eps = cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(w[p + "input_layernorm.weight"], eps, trainable)
        self.q_proj = linear_from(w[p + "self_attn.q_proj.weight"], trainable)
        self.k_proj = linear_from(w[p + "self_attn.k_proj.weight"], trainable)
        self.v_proj = linear_from(w[p + "self_attn.v_proj.weight"], trainable)
        self.o_proj = linear_from(w[p + "self_attn.o_proj.weight"], trainable)
        self.post_attention_layernorm = RMSNorm(w[p + "post_attention_layernorm.weight"], eps, trainable)
        self.gate_proj = linear_from(w[p + "mlp.gate_proj.weight"], trainable)
        self.up_proj = linear_from(w[p + "mlp.up_proj.weight"], trainable)
        self.down_proj = linear_from(w[p + "mlp.down_proj.weight"], trainable)
        self.scale = float(np.float32(1.0 / math.sqrt(self.head_dim)))

    @staticmethod
    def rope(x, cos, sin):
        half = x.shape[-1] // 2
        rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rot * sin

    def repeat_kv(self, x):
        rep = self.heads // self.kv_heads
        if rep == 1:
            return x
        b, kv, s, d = x.shape
        return x[:, :, None, :, :].expand(b, kv, rep, s, d).reshape(b, kv * rep, s, d)

    def forward(self, x, mask, cos, sin):
        b, s, _ = x.shape
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        n = self.input_layernorm(x)
        q = self.q_proj(n).view(b, s, h, d).transpose(1, 2)
        k = self.k_proj(n).view(b, s, kv, d).transpose(1, 2)
        v = self.v_proj(n).view(b, s, kv, d).transpose(1, 2)
        q = self.rope(q, cos, sin)
        k = self.rope(k, cos, sin)
        k = self.repeat_kv(k)
        v = self.repeat_kv(v)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scale + mask
        p = torch.softmax(scores, dim=-1)
        a = torch.matmul(p, v).transpose(1, 2).reshape(b, s, h * d)
        x = x + self.o_proj(a)
        n = self.post_attention_layernorm(x)
        g = self.gate_proj(n)
        g = g * torch.sigmoid(g)
        x = x + self.down_proj(g * self.up_proj(n))
        return x


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg, w, trainable=False):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Parameter(w["model.embed_tokens.weight"].clone(), requires_grad=trainable)
        self.layers = nn.ModuleList(DecoderLayer(cfg, w, i, trainable) for i in range(cfg["layers"]))
        self.norm = RMSNorm(w["model.norm.weight"], cfg["rms_norm_eps"], trainable)
        self.lm_head = linear_from(w["lm_head.weight"], trainable)
        d = cfg["hidden"] // cfg["heads"]
        inv = [1.0 / math.pow(cfg["rope_theta"], 2.0 * j / d) for j in range(d // 2)]
        self.register_buffer("inv_freq", torch.tensor(inv, dtype=torch.float64).to(torch.float32), persistent=False)

    def forward(self, input_ids, attention_mask, position_ids):
        b, s = input_ids.shape
        x = F.embedding(input_ids, self.embed_tokens)
        qpos = torch.arange(s)
        causal = torch.arange(s)[None, :] <= qpos[:, None]  # [s, total]
        ok = causal[None, None, :, :] & attention_mask.bool()[:, None, None, :]
        mask = torch.where(ok, torch.tensor(0.0), torch.tensor(torch.finfo(torch.float32).min))
        freqs = position_ids.to(torch.float32)[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos()[:, None, :, :]
        sin = emb.sin()[:, None, :, :]
        for layer in self.layers:
            x = layer(x, mask, cos, sin)
        return self.lm_head(self.norm(x))


def causal_lm_loss(logits, labels):
    """HF's LlamaForCausalLM loss: shift, cross entropy, ignore -100, mean."""
    shift_logits = logits[:, :-1, :].contiguous()
    shift_labels = labels[:, 1:].contiguous()
    x = shift_logits.view(-1, shift_logits.size(-1))
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # HF upcasts half logits
    return F.cross_entropy(x, shift_labels.view(-1), ignore_index=-100)


def inject_lora(model, cfg, lora, init=None):
    """Wraps the target linear layers as PEFT does and returns the LoRA params by ONNX name."""
    r, alpha = lora["r"], lora["alpha"]
    params = {}
    for i, layer in enumerate(model.layers):
        for attr in lora["targets"]:
            module = "model.layers.%d.self_attn.%s" % (i, attr)
            a = b = None
            if init is not None:
                a, b = init[module + ".lora_A.weight"], init[module + ".lora_B.weight"]
            wrapped = LoRALinear(getattr(layer, attr), r, alpha, a, b, lora.get("dropout", 0.0))
            setattr(layer, attr, wrapped)
            params[module + ".lora_A.weight"] = wrapped.lora_A.weight
            params[module + ".lora_B.weight"] = wrapped.lora_B.weight
    return params


# ---------------------------------------------------------------- training


class Run:
    """One benchmark configuration: the model, its optimizer and its data."""

    def __init__(self, d, mode, batch, seq, threads, steps_total=1000):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        with open(os.path.join(d, "config.json")) as f:
            meta = json.load(f)
        self.cfg, self.lora = meta["model"], meta["lora"]
        # The weights, in ONNX layout, and the initial adapter live in the
        # model's folder, shared by every run of the model.
        self.train = meta.get("train", {})
        mdir = meta["model_dir"]
        w = read_safetensors(os.path.join(mdir, "weights.safetensors"))
        full = mode == "train-full"
        self.model = LlamaForCausalLM(self.cfg, w, trainable=full)
        del w
        self.mode = mode
        self.params = None
        if mode in ("train-lora", "forward-lora", "forward-merged", "parity"):
            init = read_safetensors(os.path.join(mdir, meta["lora_file"]))
            self.lora_params = inject_lora(self.model, self.cfg, self.lora, init)
            if mode == "forward-merged":
                for layer in self.model.layers:
                    for attr in self.lora["targets"]:
                        getattr(layer, attr).merge()
        if mode.startswith("train") or mode == "parity":
            self.params = [p for p in self.model.parameters() if p.requires_grad]
            lr = self.train.get("lr", 1e-3)
            self.opt = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
            total = max(1, int(self.train.get("steps", steps_total)))
            warm = int(self.train.get("warmup", 0))

            def linear(step):  # transformers.get_linear_schedule_with_warmup
                if step < warm:
                    return float(step) / float(max(1, warm))
                return max(0.0, float(total - step) / float(max(1, total - warm)))

            self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, linear)
            self.clip = float(self.train.get("clip", 1.0))
            self.model.train()
        else:
            self.model.eval()
        data = read_safetensors(os.path.join(d, "data.safetensors"))
        ids = data["input_ids"]  # [n, batch, seq]
        if batch and seq:
            ids = ids[:, :batch, :seq]
        self.batches = [ids[i].contiguous() for i in range(ids.shape[0])]
        b, s = self.batches[0].shape
        self.tokens = b * s
        self.mask = torch.ones(b, s, dtype=torch.int64)
        self.pos = torch.arange(s, dtype=torch.int64)[None, :].expand(b, s).contiguous()
        self.i = 0

    def step(self):
        ids = self.batches[self.i % len(self.batches)]
        self.i += 1
        c0 = cpu_s()
        t0 = time.perf_counter()
        if self.params is not None:
            logits = self.model(ids, self.mask, self.pos)
            loss = causal_lm_loss(logits, ids)
            loss.backward()
            if self.clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            out = float(loss.detach())
        else:
            with torch.inference_mode():
                logits = self.model(ids, self.mask, self.pos)
                out = float(logits[0, -1, 0])
        dt = time.perf_counter() - t0
        return dt, out, cpu_s() - c0


def cmd_worker(args):
    t0 = time.perf_counter()
    run = Run(args.dir, args.mode, args.batch, args.seq, args.threads)
    setup = time.perf_counter() - t0
    emit({"ready": True, "setup_s": setup, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb(),
          "tokens": run.tokens, "torch": torch.__version__, "threads": torch.get_num_threads(),
          "blas": blas_name()})
    for line in sys.stdin:
        c = line.strip()
        if c == "step":
            dt, v, cpu = run.step()
            emit({"ms": dt * 1e3, "cpu_ms": cpu * 1e3, "value": v})
        elif c == "stats":
            emit({"rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()})
        elif c == "quit" or c == "":
            break
        else:
            emit({"error": "unknown command %r" % c})


def cmd_parity(args):
    run = Run(args.dir, "parity", 0, 0, args.threads, steps_total=args.steps)
    if args.dtype == "float64":
        run.model.double()  # a reference: the same run without float32 rounding
    losses = []
    for _ in range(args.steps):
        _, loss, _ = run.step()
        losses.append(loss)
    out = {name: p.detach().t().contiguous() for name, p in run.lora_params.items()}  # back to [in, r], [r, out]
    write_safetensors(args.out, out, {"losses": json.dumps(losses)})
    emit({"losses": losses})


def cmd_grads(args):
    """Writes the loss and the adapter gradients of step 1 (before clipping),
    in the ONNX layout, computed in float32 or float64. Float64 gradients are
    stored rounded to float32: a reference for float32 values needs no more."""
    run = Run(args.dir, "parity", 0, 0, args.threads)
    if args.dtype == "float64":
        run.model.double()
    ids = run.batches[0]
    loss = causal_lm_loss(run.model(ids, run.mask, run.pos), ids)
    loss.backward()
    out = {name: p.grad.detach().t().contiguous().to(torch.float32) for name, p in run.lora_params.items()}
    write_safetensors(args.out, out, {"loss": repr(float(loss))})
    emit({"loss": float(loss)})


def cmd_profile(args):
    """Profiles one training step after a warmup step; prints the top ops as JSON."""
    run = Run(args.dir, args.mode, 0, 0, args.threads)
    for _ in range(args.warmup):
        run.step()
    with torch.autograd.profiler.profile() as prof:
        dt, _, _ = run.step()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    emit({"step_ms": dt * 1e3,
          "ops": [{"name": e.key, "ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in ops[:args.top]]})


def blas_name():
    """Names the BLAS library that torch's generic BLAS build loaded."""
    try:
        with open("/proc/self/maps") as f:
            libs = [line.split()[-1] for line in f if ".so" in line]
    except OSError:
        return "unknown"
    for tag in ("libopenblas", "libblis", "libmkl", "libblas"):
        for lib in libs:
            if tag in lib.rsplit("/", 1)[-1]:
                return lib
    return "unknown"


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--dir", required=True)
    w.add_argument("--mode", required=True,
                   choices=["train-lora", "train-full", "forward-base", "forward-lora", "forward-merged"])
    w.add_argument("--batch", type=int, default=0)
    w.add_argument("--seq", type=int, default=0)
    w.add_argument("--threads", type=int, default=os.cpu_count())
    p = sub.add_parser("parity")
    p.add_argument("--dir", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    g = sub.add_parser("grads")
    g.add_argument("--dir", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    g.add_argument("--threads", type=int, default=os.cpu_count())
    f = sub.add_parser("profile")
    f.add_argument("--dir", required=True)
    f.add_argument("--mode", default="train-lora", choices=["train-lora", "train-full"])
    f.add_argument("--warmup", type=int, default=1)
    f.add_argument("--top", type=int, default=15)
    f.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    # Fixed before any parallel work, as torch requires.
    torch.set_num_interop_threads(1)
    {"worker": cmd_worker, "parity": cmd_parity, "profile": cmd_profile, "grads": cmd_grads}[args.cmd](args)


if __name__ == "__main__":
    main()
