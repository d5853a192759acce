"""Who rates: invited raters, signed-in accounts, or typed names.

`RECONTEXT_RATERS` says which a deployment takes:
- `invite`: only raters with a personal link. `python -m recontext ratings invite NAME`
  prints it: the studio's address with `?rater=TOKEN`, a token signed with a key derived
  from the data folder's secret and naming the rater, the campaign and an invite id kept
  in the data folder's `raters.json`. `ratings revoke NAME` marks that invite revoked:
  its link stops working at once (a new invite makes a new link). A typed name is refused.
- `signin`: the Hugging Face account of a Space with OAuth (`hf_oauth: true`); a typed
  name is refused.
- `open` (the default without OAuth): the name typed, unverified.

A verified rater's id is `@` and their name key, stored with `signed` set; a typed name
can never start with `@` (and an unsigned row with an `@` id, from an older file, never
counts in a gold check), so an unverified name is never the same rater as a verified one:
it cannot be flagged in their place, nor can its ratings or gold answers touch theirs. `RECONTEXT_CAMPAIGN`, when set, accepts only the
links of that campaign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timezone

from ..locks import lock_for, replace_json
from .names import rater_key
from .store import VERIFIED, text_field

MODES = ("invite", "signin", "open")
REGISTRY = "raters.json"
PREFIX = "rt1."
_CONTEXT = b"recontext rater token v1"
DEFAULT_URL = "http://127.0.0.1:7860/"


def raters_mode() -> str:
    """`$RECONTEXT_RATERS`: invite, signin or open (default: signin on a Space with OAuth,
    otherwise open)."""
    default = "signin" if os.environ.get("OAUTH_CLIENT_ID") else "open"
    mode = os.environ.get("RECONTEXT_RATERS", "").strip().lower() or default
    if mode not in MODES:
        raise ValueError(f"RECONTEXT_RATERS must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "signin" and not os.environ.get("OAUTH_CLIENT_ID"):
        raise ValueError("RECONTEXT_RATERS=signin needs Hugging Face sign-in (a Space with hf_oauth: true); "
                         "use invite links (RECONTEXT_RATERS=invite) elsewhere")
    return mode


def _key(secret: bytes) -> bytes:
    if not secret:
        raise ValueError("rater tokens need the deployment's secret")
    return hmac.new(secret, _CONTEXT, hashlib.sha256).digest()


def _registry_path(root: str) -> str:
    return os.path.join(root, REGISTRY)


def read_registry(root: str) -> dict:
    try:
        with open(_registry_path(root), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"the raters file {REGISTRY} cannot be read ({e})") from e


def _update(root: str, change) -> dict:
    path = _registry_path(root)
    with lock_for(path):
        registry = read_registry(root)
        result = change(registry)
        replace_json(path, registry)
    return result


def _name(name: str) -> str:
    key = rater_key(text_field("name", name if isinstance(name, str) else "", 1, 64))
    if not key or key.startswith((VERIFIED, "?", "'")):
        raise ValueError(f"name: give a rater name (letters, digits), got {name!r}")
    return key


def invite(root: str, secret: bytes, name: str, campaign: str = "") -> str:
    """A new signed token for `name` (a new invite replaces the old one, whose link stops
    working)."""
    key = _name(name)
    campaign = text_field("campaign", campaign or "", 0, 64)
    invite_id = secrets.token_hex(8)

    def add(registry):
        registry[key] = {"invite": invite_id, "campaign": campaign, "revoked": False,
                         "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _update(root, add)
    body = json.dumps({"n": key, "c": campaign, "i": invite_id}, separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
    return PREFIX + payload + "." + hmac.new(_key(secret), payload.encode(), hashlib.sha256).hexdigest()[:32]


def link(token: str, url: str | None = None) -> str:
    """The personal link: the studio's address (`url`, else `$RECONTEXT_PUBLIC_URL`, else
    the local default) with `?rater=TOKEN`."""
    url = url or os.environ.get("RECONTEXT_PUBLIC_URL", "").strip() or DEFAULT_URL
    return url.rstrip("/") + "/?rater=" + token


def revoke(root: str, name: str) -> None:
    """Revoke `name`'s invite: its link is refused from now on. ValueError if none."""
    key = _name(name)

    def mark(registry):
        if key not in registry:
            raise ValueError(f"no invite for {name!r}: `ratings invite {name}` makes one")
        registry[key]["revoked"] = True
    _update(root, mark)


def is_token(text) -> bool:
    return isinstance(text, str) and text.strip().startswith(PREFIX)


def check(root: str, secret: bytes, token: str) -> str:
    """The invited rater's name key, if `token` is genuine, current and of this campaign."""
    payload, _, sig = token.strip()[len(PREFIX):].partition(".")
    good = hmac.new(_key(secret), payload.encode(), hashlib.sha256).hexdigest()[:32]
    if not sig or not hmac.compare_digest(sig, good):
        raise ValueError("this rater link was not made by this studio (or its secret changed): "
                         "ask whoever runs the campaign for a new one")
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        name, campaign, invite_id = str(body["n"]), str(body["c"]), str(body["i"])
    except (ValueError, KeyError, TypeError):
        raise ValueError("this rater link cannot be read: ask for a new one") from None
    entry = read_registry(root).get(name)
    if not entry or entry.get("invite") != invite_id or entry.get("revoked"):
        raise ValueError("this rater link was revoked or replaced: ask whoever runs the campaign for a new one")
    wanted = os.environ.get("RECONTEXT_CAMPAIGN", "").strip()
    if wanted and campaign != wanted:
        raise ValueError(f"this rater link is for campaign {campaign!r}, not {wanted!r}")
    return name


def identify(root: str, secret: bytes, typed, username: str | None = None, mode: str | None = None) -> tuple[str, bool]:
    """(rater id, verified) for what a request carries: `typed` (a name, or a rater token
    from a personal link) and `username` (a signed-in account). See the module's text."""
    mode = mode or raters_mode()
    if is_token(typed) and mode != "signin":
        return VERIFIED + check(root, secret, typed), True
    if mode == "signin":
        if not username:
            raise ValueError("sign in with Hugging Face first: on this studio ratings are signed with your account")
        return VERIFIED + rater_key(username), True
    if mode == "invite":
        raise ValueError("this campaign rates by invitation only: open the personal link you were sent "
                         "(a typed name is not accepted)")
    if not isinstance(typed, str) or not typed.strip():
        raise ValueError("rater: give your name first (1–64 characters)")
    key = rater_key(typed)
    if key.startswith((VERIFIED, "?")):
        raise ValueError(f"rater: a typed name cannot start with {key[0]!r} (kept for verified raters)")
    return typed, False
