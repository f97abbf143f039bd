"""Vectorised constrained decoding: a CSR prefix trie and a batched beam search over it."""
from genrec.decode.beam import check_k, constrained_beam_search
from genrec.decode.trie import PrefixTrie

__all__ = ["PrefixTrie", "check_k", "constrained_beam_search"]
