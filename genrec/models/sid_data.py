"""Moved to genrec.models.sid.data (kept as a re-export until the SID subpackage move is finished)."""
from genrec.models.sid.data import (BOS, N_SPECIAL, PAD, USER_HASH, PrefixExamples, SequenceWindows,  # noqa: F401
                                    item_token_table, level_offsets, pack_histories, user_token, vocab_size_of)
