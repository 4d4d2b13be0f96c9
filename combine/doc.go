// Package combine makes one LoRA adapter out of several adapters of one
// base model, as HuggingFace PEFT's LoraModel.add_weighted_adapter does:
// by linear, cat, svd, ties, dare_linear, dare_ties or magnitude_prune,
// with a weight per adapter. The result is a plain adapter.Adapter that
// every command and package reads.
//
// # What each method computes
//
// Write s_i for adapter i's scaling of a module (alpha/r, or alpha/√r with
// rsLoRA, after rank_pattern and alpha_pattern), w_i for its weight, and
// A_i [in, r], B_i [r, out] for its factors, so that its delta is
// s_i·A_i·B_i. Every combined module has scaling 1: the inputs' scalings
// are folded into the factors, once.
//
//   - cat: A = [w_1·s_1·A_1 | w_2·s_2·A_2 | …] and B = [B_1; B_2; …], so
//     A·B = Σ w_i·s_i·A_i·B_i exactly. The rank is the sum of the ranks.
//   - svd: the best rank-k approximation (Eckart–Young) of
//     D = Σ w_i·s_i·A_i·B_i: D = U·Σ·Vᵀ, A = U_k [in, k] with orthonormal
//     columns and B = Σ_k·V_kᵀ [k, out], as PEFT puts the singular values
//     in lora_B. k is Options.Rank, or the largest input rank (a module's
//     rank is at most min(in, out)).
//   - linear: NOT the weighted sum of the deltas. PEFT combines the factors
//     separately: with c_i = w_i·s_i, A = Σ sgn(c_i)·√|c_i|·A_i and
//     B = Σ √|c_i|·B_i, so A·B = Σ_i Σ_j sgn(c_i)·√|c_i·c_j|·A_i·B_j, with
//     cross terms i ≠ j. With one adapter it is exact. All inputs must have
//     the same rank for each module they share.
//   - ties, dare_linear, dare_ties, magnitude_prune: the same two sums over
//     factors, each taken by PEFT's merge_utils rule with the weights
//     sgn(c_i)·√|c_i| (A) and √|c_i| (B): magnitude_prune keeps the
//     int(density·n) largest |values| of each A_i (and B_i) and sums;
//     ties prunes the same way, elects a sign per element from the pruned,
//     unweighted factors (majority sign "total": the sign of their sum;
//     "frequency": of the sum of their signs; zero counts as +), and
//     averages the weighted values that agree with it (disjoint merge);
//     dare_linear keeps each value with probability density and divides
//     by density, then sums; dare_ties prunes as dare_linear and merges as
//     ties. A density of 1 prunes nothing.
//
// As in PEFT, one adapter is always combined by linear, whatever the
// method (EffectiveMethod says so), and a module that only some inputs
// have is combined from those.
//
// # The result
//
// The combined config has r and lora_alpha equal (scaling 1), use_rslora
// false, target_modules naming exactly the combined modules, and, where a
// module's rank differs from r, a rank_pattern and a matching
// alpha_pattern entry keyed by the module's full name, so that the
// adapter reloads with the shapes it has (r is the rank most modules
// have). The rest of the config (dropout, dtype, task type, base model) is
// the first input's, as PEFT copies it. Each factor is stored in the
// element type of the first input's lora_A for that module, rounded in
// memory as the file will hold it. UniformRank pads every module to one
// rank with zeros, for layouts without rank_pattern (PaddleNLP's).
//
// # Differences from PEFT
//
// These fix what PEFT's users found wrong in add_weighted_adapter:
//   - rsLoRA: PEFT copied use_rslora to the combined adapter, whose
//     scaling then was √r instead of 1 (peft#3449); here it is false.
//   - svd: PEFT took get_delta_weight, which already holds s_i, and
//     weighted it by w_i·s_i, applying the scaling twice (peft#3111); here
//     D = Σ w_i·s_i·A_i·B_i.
//   - per-module ranks: the combined adapter records the rank of each
//     module (peft#3737), where PEFT zero-pads cat to one rank and drops
//     the per-module ranks of the linear family; and here that family
//     needs equal ranks only for the modules two inputs share, where PEFT
//     compares each adapter's largest rank.
//   - lora_bias (peft#3761): package adapter refuses such files, so none
//     reaches combine; DoRA adapters (use_dora), fused projections
//     (enable_lora_list), adapters that train base tensors (biases,
//     modules_to_save: absolute values, not deltas to weight) and prefix
//     adapters are errors.
//
// Not offered: PEFT's ties_svd, dare_linear_svd, dare_ties_svd and
// magnitude_prune_svd, svd_clamp, and adapters on embeddings or
// convolutions (which package adapter does not hold).
//
// # Numbers
//
// Everything is computed in float64 and rounded once at the end, so the
// results match PEFT's float32 ones to float tolerance, not bit for bit.
// The svd is exact for these shapes without a dense D: Householder QR of
// the stacked factors and a one-sided Jacobi SVD of the small core
// (jacobi.go), O((in+out)·R²) for R the sum of the ranks. Among equal
// magnitudes, magnitude pruning keeps the earlier element in graph layout
// (row-major A [in, r], B [r, out]); torch.topk's order is unspecified.
//
// DARE's masks are seeded and reproducible, and not PEFT's: PEFT draws
// them with torch.bernoulli, so bit-equality with PEFT is not expected.
// The masks of a module come from math/rand/v2's PCG seeded with
// (Options.Seed, the FNV-1a 64-bit hash of the module name): first A's
// mask of each input in input order, then B's, each element in row-major
// graph layout, kept when Float64() < density.
//
// # Errors
//
// Errors start with "combine: " and name the input (Input.Name) and the
// module at fault.
package combine
