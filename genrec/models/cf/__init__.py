"""CF embedding baselines: mf_bpr, neumf, lightgcn, sgl, sasrec (one file each, one registry).

Imports are lazy so that loading a config does not import torch:
`from genrec.models.cf import register, available, load_pretrained, fit_item_embeddings`.
"""
from __future__ import annotations

_LAZY = {
    "register": "genrec.models.cf.registry", "available": "genrec.models.cf.registry",
    "get_model_class": "genrec.models.cf.registry", "CFModel": "genrec.models.cf.base",
    "load_pretrained": "genrec.models.cf.base", "FaissRanker": "genrec.models.cf.base",
    "fit_item_embeddings": "genrec.models.cf.family", "build_model": "genrec.models.cf.family",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genrec.models.cf' has no attribute {name!r}")
