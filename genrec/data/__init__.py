"""Datasets, preprocessing and splits. `python -m genrec.data ml-100k` prints counts."""
from genrec.data.dataset import EvalSet, RecData, Split, load_data, split_data

__all__ = ["EvalSet", "RecData", "Split", "load_data", "split_data"]
