"""Keys for what runbookd signs (approval links, web sessions), derived from one secret.

Each purpose gets its own key, so a MAC made for one can never pass as another's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from app.config import Settings
from app.errors import SigningKeyMissing

log = logging.getLogger(__name__)

# In dev without RUNBOOKD_LINK_SECRET: one random root key per process.
_dev_keys: dict[str, bytes] = {}


def derived_key(settings: Settings, purpose: str) -> bytes:
    """A key for one purpose, derived from RUNBOOKD_LINK_SECRET (or a dev process key)."""
    if settings.link_secret is not None:
        secret = settings.link_secret.get_secret_value().encode()
    elif settings.env == "dev":
        if "root" not in _dev_keys:
            _dev_keys["root"] = secrets.token_bytes(32)
            log.warning("RUNBOOKD_LINK_SECRET is not set: approval links and web sessions are "
                        "signed with a per-process key and stop working after a restart")
        secret = _dev_keys["root"]
    else:
        raise SigningKeyMissing("RUNBOOKD_LINK_SECRET is not set: approval links and web "
                                "sign-in are disabled")
    return hmac.new(secret, f"runbookd:{purpose}:v1".encode(), hashlib.sha256).digest()
