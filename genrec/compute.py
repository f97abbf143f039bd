"""Analytic training compute: how many FLOPs a run spent, from counts the families record.

The count follows Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", section 2.1): a forward
pass costs 2 FLOPs per non-embedding parameter per token (one multiply-add) plus 2 x n_layers x context
x d_attn for the attention scores and the weighted values; the backward pass costs twice the forward,
so one training token costs

    6 x N + 6 x n_layers x context x d_attn          (N = non-embedding parameters)

and a run costs that times its training tokens. Embedding look-ups, norms, softmaxes and biases are left
out, as in Kaplan et al.; so is the optimizer. Evaluation and validation are not training compute. With a
frozen base model (LoRA) the backward pass computes no weight gradients for it, so the true cost is nearer
4 x N per token; the count keeps 6 x N (an upper bound) so that every row uses one formula.

What a "token" is, per kind of model:
- token sequences (SID and LLM families): one token position that went through a forward and a backward
  pass, summed over all steps of all epochs (padding excluded). `context` is the mean number of
  positions a token attends to (Kaplan's n_ctx), n_layers the layers that attend (encoder + decoder
  layers for an encoder-decoder), d_attn = heads x head width.
- CF models: one training example, i.e. one (user, positive item) pair (SASRec: one predicted position
  of a user's sequence), summed over all epochs. Their non-embedding parameters are few or none (MF has
  none), so two terms Kaplan leaves out are counted for them, because they are most of the work:
  * scoring: each example scores `scored_items` items (1 + negatives for bpr/bce/sampled softmax, the
    whole catalogue for softmax) with a dot product of width `score_dim`: 2 x score_dim FLOPs forward,
    x 3 with the backward (gradients to both sides), i.e. 6 x score_dim x scored_items per example;
  * graph propagation (LightGCN, SGL): each training step multiplies the normalised adjacency (2 x
    edges non-zeros) with the embedding table once per layer and per view: 2 x (2 x edges) x dim FLOPs
    forward; the adjacency is constant, so the backward is one more product (x 2 in all):
    8 x edges x dim x layers x views per step.
  The attention term applies to SASRec as to any transformer (context = the trained sequence length).

Extra keys a family fills in FamilyResult.extra (all totals over the whole training run):
  train_tokens | train_examples   tokens (sequence models) or examples (CF models) trained on
  n_layers, context, d_attn       the attention term (optional; 0 or absent = none)
  scored_items, score_dim         the CF scoring term (optional)
  graph_steps, graph_edges, graph_dim, graph_layers, graph_views   the propagation term (optional)
`train_compute(extra, params)` turns them into the row's `train_tokens` and `train_flops`.
"""
from __future__ import annotations


def kaplan_flops(params_non_embedding: float, tokens: float, n_layers: int = 0, context: float = 0,
                 d_attn: int = 0) -> float:
    """6 x N x tokens + 6 x n_layers x context x d_attn x tokens (Kaplan et al. 2020)."""
    per_token = 6.0 * params_non_embedding + 6.0 * n_layers * context * d_attn
    return per_token * tokens


def scoring_flops(examples: float, scored_items: float, score_dim: int) -> float:
    """Dot products of a user (or position) vector with the items an example scores, forward + backward."""
    return 6.0 * score_dim * scored_items * examples


def graph_flops(steps: float, edges: float, dim: int, layers: int, views: int = 1) -> float:
    """LightGCN-style propagation: per step, layer and view one sparse product with 2 x edges non-zeros
    (2 FLOPs each per column) forward and one backward: 8 x edges x dim."""
    return 8.0 * edges * dim * layers * views * steps


def sequence_flops(params_non_embedding: float, tokens: float, n_layers: int = 0, context: float = 0,
                   d_attn: int = 0) -> float:
    """Token-sequence models (SID, LLM): the Kaplan count over the training tokens."""
    return kaplan_flops(params_non_embedding, tokens, n_layers, context, d_attn)


def cf_flops(params_non_embedding: float, examples: float, scored_items: float = 0, score_dim: int = 0,
             n_layers: int = 0, context: float = 0, d_attn: int = 0) -> float:
    """CF models: the Kaplan count over (user, item) examples plus the scoring term (no propagation)."""
    return (kaplan_flops(params_non_embedding, examples, n_layers, context, d_attn)
            + scoring_flops(examples, scored_items, score_dim))


def _num(extra: dict, key: str) -> float:
    value = extra.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def train_compute(extra: dict, params: dict) -> dict:
    """{"train_tokens": ..., "train_flops": ...} from a FamilyResult's extra and params.

    train_tokens is `train_tokens`, else `train_examples` when the extra follows the CF contract (it has
    `scored_items`) or is 0 (baselines: no training, cost 0); otherwise both are None (unknown: a family
    that does not report them, or whose `train_examples` means something else, e.g. a data count).
    """
    cf_like = "scored_items" in extra or extra.get("train_examples") == 0
    key = "train_tokens" if "train_tokens" in extra else "train_examples" if cf_like else ""
    if not key or extra.get(key) is None:
        return {"train_tokens": None, "train_flops": None}
    tokens = _num(extra, key)
    n_nonemb = float(params.get("params_non_embedding") or 0)
    flops = kaplan_flops(n_nonemb, tokens, int(_num(extra, "n_layers")), _num(extra, "context"),
                         int(_num(extra, "d_attn")))
    flops += scoring_flops(tokens, _num(extra, "scored_items"), int(_num(extra, "score_dim")))
    flops += graph_flops(_num(extra, "graph_steps"), _num(extra, "graph_edges"), int(_num(extra, "graph_dim")),
                         int(_num(extra, "graph_layers")), int(_num(extra, "graph_views") or 1))
    return {"train_tokens": int(tokens), "train_flops": float(flops)}
