"""PrefixTrie and constrained beam search: hand-built cases and exact agreement with exhaustive scoring."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.decode import PrefixTrie, check_k, constrained_beam_search

H = 1009  # hash buckets of the toy model


class ToyModel:
    """Logits depend on (user, full prefix) through a rolling hash, so a wrong KV reorder changes them."""

    def __init__(self, vocab: int, seed: int = 0, temp: float = 3.0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(H, vocab, generator=g) * temp

    def h0(self, users):
        return (users * 131 + 7) % H

    def step(self, h, tok):
        return (h * 31 + tok + 1) % H

    def search(self, users, trie, K, max_steps, exclude=None):
        users = torch.as_tensor(users)

        def step_fn(tokens, h):
            h = self.h0(users.repeat_interleave(K)) if tokens is None else self.step(h, tokens)
            return self.W[h], h

        return constrained_beam_search(step_fn, None, len(users), trie, K, max_steps,
                                       reorder_fn=lambda h, idx: h[idx], exclude=exclude)

    def exhaustive(self, users, seqs):
        """[n_users, n_items] total log-prob of every item sequence (the ground truth)."""
        out = torch.zeros(len(users), len(seqs))
        for ui, u in enumerate(users):
            for i, s in enumerate(seqs):
                h, tot = self.h0(torch.tensor(u)), 0.0
                for j, t in enumerate(s):
                    if j:
                        h = self.step(h, torch.tensor(s[j - 1]))
                    tot += torch.log_softmax(self.W[h], -1)[t].item()
                out[ui, i] = tot
        return out


def random_sids(n, levels, card, seed=0):
    rng = np.random.default_rng(seed)
    codes = set()
    while len(codes) < n:
        codes.add(tuple(int(x) for x in rng.integers(0, card, levels)))
    codes = np.array(sorted(codes, key=lambda c: rng.random()))
    return codes + np.arange(levels) * card  # level-offset tokens


def variable_seqs(n, vocab, eos, seed=0):
    rng = np.random.default_rng(seed)
    seqs = set()
    while len(seqs) < n:
        L = int(rng.integers(1, 5))
        seqs.add(tuple(int(x) for x in rng.integers(0, vocab - 1, L)) + (eos,))
    return [list(s) for s in seqs]


def test_trie_queries_and_csr():
    seqs = [[1, 2, 3], [1, 2, 4], [5, 0]]
    t = PrefixTrie.build(seqs, vocab_size=6)
    assert t.n_nodes == 1 + 2 + 2 + 2  # root, {1,5}, {12,50}, {123,124}
    assert t.indptr.numel() == t.n_nodes + 1 and t.edge_token.numel() == t.n_nodes - 1
    root = torch.tensor([0])
    assert t.allowed(root)[0].nonzero().flatten().tolist() == [1, 5]
    n1 = t.advance(root, torch.tensor([1]))
    n12 = t.advance(n1, torch.tensor([2]))
    assert t.allowed(n12)[0].nonzero().flatten().tolist() == [3, 4]
    assert t.advance(n1, torch.tensor([3])).item() == -1
    assert t.advance(torch.tensor([-1]), torch.tensor([1])).item() == -1
    assert not t.allowed(torch.tensor([-1])).any()
    ends = t.advance(n12.repeat(2), torch.tensor([3, 4]))
    assert t.item_at(ends).tolist() == [0, 1]
    assert t.item_at(torch.cat([root, n1, torch.tensor([-1])])).tolist() == [-1, -1, -1]
    assert t.lookup(torch.tensor([[5, 0, -1], [1, 2, 4], [1, 1, 1]])).tolist() == [2, 1, -1]
    # array input (fixed length) gives the same trie as the list input
    sid = random_sids(30, 3, 4)
    a, b = PrefixTrie.build(sid, 12), PrefixTrie.build(sid.tolist(), 12)
    assert torch.equal(a.edge_key, b.edge_key) and torch.equal(a.node_item, b.node_item)
    assert t.lookup(torch.as_tensor(seqs[0])[None]).item() == 0


def test_trie_bad_input():
    with pytest.raises(ValueError, match="identical"):
        PrefixTrie.build([[1, 2], [3, 4], [1, 2]], 5)
    with pytest.raises(ValueError, match="prefix"):
        PrefixTrie.build([[1, 2], [1, 2, 3]], 5)
    with pytest.raises(ValueError, match="outside"):
        PrefixTrie.build([[1, 7]], 5)
    with pytest.raises(ValueError, match="empty"):
        PrefixTrie.build([[1], []], 5)


def test_constrained_beats_invalid_greedy():
    # valid SIDs: (0,1) and (1,0). The model prefers token 0 at every step: greedy gives (0,0), invalid.
    trie = PrefixTrie.build([[0, 1], [1, 0]], vocab_size=3)
    logits = [torch.tensor([5.0, 1.0, 0.0]), torch.tensor([4.0, -3.0, 2.0])]

    def step_fn(tokens, t):
        t = 0 if tokens is None else t + 1
        return logits[t].expand(2 * 3, 3).clone(), t

    greedy = [int(lg.argmax()) for lg in logits]
    assert trie.lookup(torch.tensor([greedy])).item() == -1  # unconstrained greedy: not an item
    items, scores = constrained_beam_search(step_fn, None, 2, trie, num_beams=3, max_steps=2)
    lp = [torch.log_softmax(lg, -1) for lg in logits]
    s01, s10 = lp[0][0] + lp[1][1], lp[0][1] + lp[1][0]
    assert s10 > s01  # the best valid item starts with the less likely first token
    assert items.tolist() == [[1, 0, -1], [1, 0, -1]]
    assert torch.allclose(scores[:, 0], s10) and torch.allclose(scores[:, 1], s01)
    assert torch.isinf(scores[:, 2]).all()


@pytest.mark.parametrize("kind", ["sid", "eos"])
def test_beam_equals_exhaustive(kind):
    if kind == "sid":
        seqs = random_sids(40, 3, 5, seed=1).tolist()
        V, steps = 15, 3
    else:
        V = 9
        seqs = variable_seqs(40, V, eos=V - 1, seed=2)
        steps = max(len(s) for s in seqs)
    trie = PrefixTrie.build(seqs, V)
    model = ToyModel(V, seed=3)
    users = [0, 3, 11]
    truth = model.exhaustive(users, seqs)
    # num_beams >= n_items: beam search is exact and returns the full ranking
    items, scores = model.search(users, trie, K=len(seqs), max_steps=steps)
    order = torch.sort(truth, dim=1, descending=True, stable=True)
    assert torch.equal(items, order.indices)
    assert torch.allclose(scores, order.values, atol=1e-4)
    # a small beam: every item is valid and distinct, and its score is its exact total log-prob
    items, scores = model.search(users, trie, K=8, max_steps=steps)
    assert (items >= 0).all() and all(len(set(r)) == 8 for r in items.tolist())
    assert torch.allclose(scores, torch.gather(truth, 1, items), atol=1e-4)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    # batching over users does not change results
    solo = torch.cat([model.search([u], trie, K=8, max_steps=steps)[0] for u in users])
    assert torch.equal(solo, items)


def test_more_beams_than_items_and_check_k():
    seqs = [[0, 1], [0, 2], [1, 1]]
    trie = PrefixTrie.build(seqs, 3)
    items, scores = ToyModel(3).search([0, 1], trie, K=5, max_steps=2)
    assert sorted(items[0, :3].tolist()) == [0, 1, 2]
    assert (items[:, 3:] == -1).all() and torch.isinf(scores[:, 3:]).all()
    check_k(5, 5)
    with pytest.raises(ValueError, match="num_beams"):
        check_k(6, 5)


def test_deterministic():
    seqs = random_sids(60, 3, 6, seed=4).tolist()
    trie = PrefixTrie.build(seqs, 18)
    m = ToyModel(18, seed=5)
    a = m.search([1, 2, 3, 4], trie, K=10, max_steps=3)
    b = m.search([1, 2, 3, 4], trie, K=10, max_steps=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _random_exclude(n_users, n_items, seed):
    """Per-user banned sets of varied size, some leaving fewer than K items (or none)."""
    rng = np.random.default_rng(seed)
    sizes = [0, n_items // 3, n_items - 5, n_items - 1, n_items][:n_users]
    return [rng.choice(n_items, size=s, replace=False) for s in sizes]


def _masked_truth(truth, exclude):
    t = truth.clone()
    for u, ex in enumerate(exclude):
        t[u, torch.as_tensor(ex, dtype=torch.long)] = float("-inf")
    return t


@pytest.mark.parametrize("kind", ["sid", "eos"])
def test_exclusion_inside_search_equals_exhaustive_on_unseen(kind):
    if kind == "sid":
        seqs, V, steps = random_sids(40, 3, 5, seed=6).tolist(), 15, 3
    else:
        V = 9
        seqs = variable_seqs(40, V, eos=V - 1, seed=7)
        steps = max(len(s) for s in seqs)
    trie = PrefixTrie.build(seqs, V)
    model = ToyModel(V, seed=8)
    users = [0, 3, 11, 5, 2]
    exclude = _random_exclude(len(users), len(seqs), seed=9)
    truth = _masked_truth(model.exhaustive(users, seqs), exclude)
    allowed = torch.isfinite(truth).sum(1)
    for K in (len(seqs), 8):
        items, scores = model.search(users, trie, K, steps, exclude=exclude)
        n = (items >= 0).sum(1)
        assert torch.equal(n, allowed.clamp(max=K))  # min(K, unseen items) real items per user
        for u, ex in enumerate(exclude):
            row = items[u][items[u] >= 0].tolist()
            assert not set(row) & set(np.asarray(ex).tolist()) and len(set(row)) == len(row)
        if K == len(seqs):  # beams cover the catalogue: exactly the exhaustive ranking of unseen items
            order = torch.sort(truth, dim=1, descending=True, stable=True)
            real = torch.isfinite(order.values)
            assert torch.equal(torch.where(real, order.indices, -1), items)
        fin = torch.isfinite(scores)
        assert torch.allclose(scores[fin], torch.gather(truth, 1, items.clamp(min=0))[fin], atol=1e-4)


def test_banned_prefix_is_pruned_and_keeps_beams():
    # items 0..3 share prefix 0; item 4 = [1, 0]. Banning 0..3 kills node "0": with one beam the search
    # must still return item 4, though the model strongly prefers first token 0.
    seqs = [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]]
    trie = PrefixTrie.build(seqs, 4)
    assert trie.items_under().tolist()[:3] == [5, 4, 1]
    logits = torch.tensor([9.0, 0.0, 0.0, 0.0])

    def step_fn(tokens, t):
        return logits.expand(2, 4).clone(), t

    items, _ = constrained_beam_search(step_fn, None, 2, trie, 1, 2, exclude=[np.arange(4), np.array([], int)])
    assert items.tolist() == [[4], [0]]
    from genrec.decode import BannedNodes

    ban = BannedNodes.build(trie, [np.array([0, 1, 2, 3, 3, 99, -1]), None])
    n0 = trie.advance(torch.tensor([0]), torch.tensor([0]))
    assert ban.is_dead(torch.tensor([0, 1, 0]), torch.cat([n0, n0, torch.tensor([0])])).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="one per user"):
        constrained_beam_search(step_fn, None, 2, trie, 1, 2, exclude=[np.arange(4)])


def test_reference_helpers_and_sid_agreement():
    """genrec.decode.reference (HF generate + prefix_allowed_tokens_fn) gives the same top-K as our search."""
    from genrec.decode.reference import prefix_fn, prefix_table, reference_generate
    from genrec.models.sid.data import BOS, PAD
    from genrec.models.sid.modeling import SIDRecModel

    table = prefix_table([[5, 6, 1], [5, 7, 1], [8, 1]])
    assert table[()] == [5, 8] and table[(5,)] == [6, 7] and table[(5, 6)] == [1]
    fn = prefix_fn(table, 2, fallback=0)
    assert fn(0, torch.tensor([9, 9, 5])) == [6, 7] and fn(0, torch.tensor([9, 9, 3])) == [0]
    torch.manual_seed(0)
    codes = random_sids(40, 2, 8, seed=3) - np.arange(2) * 8
    model = SIDRecModel.from_codes(codes, [8, 8], None, max_history=3, num_layers=1, num_decoder_layers=1,
                                   d_model=32, num_heads=2, d_kv=16, d_ff=64, dropout=0.0).eval()
    users, hist = torch.arange(3), torch.tensor([[1, 2, 3], [-1, 4, 5], [-1, -1, 6]])
    ids, mask, _ = model._prompt(users, hist, bos=False)
    K = 5
    ours = model.beam_search(users, hist, K)
    ref = reference_generate(model.backbone.generate, model.trie, model.item_tokens.tolist(), 1, K, 2,
                             eos=BOS, pad=PAD, decoder_start=BOS, input_ids=ids, attention_mask=mask)
    assert torch.equal(ours[0], ref[0]) and torch.allclose(ours[1], ref[1], atol=1e-4)
