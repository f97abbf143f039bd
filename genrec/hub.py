"""Hugging Face Hub helpers shared by every artifact: a local folder or a Hub repo id in, a folder out.

- `local_folder(path_or_id)`: a local folder as is; otherwise the repo's snapshot through
  `huggingface_hub.snapshot_download` (offline, HF_HUB_OFFLINE=1, it is served from the local Hub cache).
- `push_folder(folder, repo_id)`: create the repo if needed and upload the folder (`HfApi.upload_folder`).
- `HubMixin`: `push_to_hub(repo_id)` for any object with `save_pretrained(folder)` (CF models, the SID
  tokenizer); it saves into a temporary folder, adds a README.md model card and uploads it.

This module imports nothing heavy at import time (huggingface_hub is imported when used).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from genrec.errors import ConfigError


def local_folder(path_or_id: str | Path, revision: str | None = None) -> Path:
    """A local folder, or the snapshot folder of a Hub repo id (downloaded, or from the cache offline)."""
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    name = str(path_or_id)
    if p.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise ConfigError(f"{name}: no such folder (and not a Hub repo id of the form owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id=name, revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise ConfigError(f"{name}: not a local folder, and the Hub repo could not be fetched "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def push_folder(folder: str | Path, repo_id: str, commit_message: str | None = None, private: bool | None = None,
                token: str | None = None, allow_patterns: list[str] | None = None,
                ignore_patterns: list[str] | None = None):
    """Create `repo_id` (model repo) if it does not exist and upload `folder` into it; returns the commit info."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: nothing to push (not a folder)")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                             commit_message=commit_message or f"Upload {folder.name} with genrec",
                             allow_patterns=allow_patterns, ignore_patterns=ignore_patterns)


class HubMixin:
    """`push_to_hub(repo_id)` for classes with `save_pretrained(folder)`; `model_card()` gives the README."""

    def model_card(self) -> str:
        return f"# {type(self).__name__}\n\nSaved with genrec (`save_pretrained`).\n"

    def push_to_hub(self, repo_id: str, commit_message: str | None = None, private: bool | None = None,
                    token: str | None = None, card: str | None = None):
        """Save into a temporary folder, write README.md (`card`, else `model_card()`) and upload it."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            readme = Path(tmp) / "README.md"
            if card is not None or not readme.exists():
                readme.write_text(card if card is not None else self.model_card())
            return push_folder(tmp, repo_id, commit_message or f"Upload {type(self).__name__} with genrec",
                               private=private, token=token)
