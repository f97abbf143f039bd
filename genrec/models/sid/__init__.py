"""The SID-based generative recommendation family (item text -> SIDs -> a Transformer over SIDs)."""
