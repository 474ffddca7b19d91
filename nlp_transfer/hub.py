"""Fail fast when the Hugging Face Hub cannot be reached, instead of retrying for minutes."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from huggingface_hub import constants

HUB_PROBE_TIMEOUT_S = 3.0
# The default encoder: its Hub id (offline, the packaged copy: nlp_transfer.text.model).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def hub_offline_requested() -> bool:
    """True if the user asked for offline mode (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``)."""
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(var, "").lower() in truthy
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds.

    The Hub clients retry unreachable hosts with back-off for tens of seconds; one cheap probe
    lets us give a clear error at once. The result is cached for the process.

    Args:
        timeout: Connection timeout in seconds.

    Returns:
        False when offline mode is requested or the endpoint cannot be reached.
    """
    if hub_offline_requested():
        return False
    return endpoint_reachable(constants.ENDPOINT, timeout)


def endpoint_reachable(url: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the host of ``url`` opens within ``timeout`` seconds.

    Args:
        url: Any ``http(s)://host[:port]/...`` address.
        timeout: Connection timeout in seconds.

    Returns:
        True if the connection opened.
    """
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_push_to_hub() -> None:
    """Fail before training when ``--push_to_hub`` cannot work.

    Raises:
        ConnectionError: The Hub is unreachable or offline mode is set.
    """
    if not hub_reachable():
        reason = "offline mode is set" if hub_offline_requested() else "no connection"
        raise ConnectionError(
            f"--push_to_hub: the Hugging Face Hub cannot be reached ({reason}). Train without "
            "--push_to_hub and upload the output_dir later with `hf upload <user/name> <output_dir>`."
        )


def push_to_hub(output_dir: str | os.PathLike, repo_id: str) -> str:
    """Upload a run's output directory (model, tokenizer, model card, metrics, plots) to the Hub.

    Checkpoints are not uploaded.

    Returns:
        The repository URL.

    Raises:
        ConnectionError: The Hub is unreachable.
        huggingface_hub.errors.HfHubHTTPError: The upload was refused (e.g. no token).
    """
    from huggingface_hub import HfApi

    check_push_to_hub()
    api = HfApi()
    url = api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=str(output_dir), ignore_patterns=["checkpoints/*", "runs/*"]
    )
    return str(url)
