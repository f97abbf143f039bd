"""Vectorised constrained decoding: a CSR prefix trie, a batched beam search over it with per-user banned
items (the ranking rule: generative models return K real, unseen items), and the KV-cache shim."""
from genrec.decode.ban import BannedNodes
from genrec.decode.beam import check_k, constrained_beam_search
from genrec.decode.cache import cache_kwarg, output_cache, reorder_cache, repeat_cache
from genrec.decode.trie import PrefixTrie

__all__ = ["BannedNodes", "PrefixTrie", "cache_kwarg", "check_k", "constrained_beam_search", "output_cache",
           "reorder_cache", "repeat_cache"]
