"""The view token: what a rater was shown, signed, so that what they submit is scored
against exactly that.

`/next_item` and `/next_pair` hand out a token naming the rater, the item, the mode, the
order of the outputs as shown (which output is label A, B, …), when it was shown and a
random view id, signed with a key derived from the deployment's secret. The order is
encrypted (XOR with a keystream keyed by the secret and the view id): the outputs of a
task come in a known method order, so a readable order would tell which label is which
method. `/rate` and
`/vote` require it and map labels to methods from the token, never by recomputing the
order: a name retyped between showing and submitting, or a secret made anew, is refused
with a message, never stored against other methods.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

MAX_AGE = 24 * 3600  # seconds a view stays valid
_CONTEXT = b"recontext view token v1"


@dataclass(frozen=True)
class View:
    rater: str
    item_id: str
    mode: str            # "likert" or "pair"
    order: tuple         # output indices as shown: order[0] is label A
    issued: float        # unix seconds when it was shown
    view_id: str         # random, one per showing


def _key(secret: bytes) -> bytes:
    if not secret:
        raise ValueError("view tokens need the deployment's secret")
    return hmac.new(secret, _CONTEXT, hashlib.sha256).digest()


def _pad(secret: bytes, view_id: str) -> bytes:
    return hmac.new(_key(secret), b"order\n" + view_id.encode(), hashlib.sha256).digest()


def _seal(secret: bytes, view_id: str, order) -> str:
    pad = _pad(secret, view_id)
    order = [int(i) for i in order]
    if len(order) > len(pad) or any(not 0 <= i < 256 for i in order):
        raise ValueError("a view shows at most 32 outputs")
    return bytes(i ^ pad[k] for k, i in enumerate(order)).hex()


def _open(secret: bytes, view_id: str, sealed: str) -> tuple:
    pad = _pad(secret, view_id)
    return tuple(b ^ pad[k] for k, b in enumerate(bytes.fromhex(sealed)))


def issue(secret: bytes, rater: str, item_id: str, mode: str, order, now: float | None = None) -> str:
    """A signed token for one showing."""
    view_id = secrets.token_hex(8)
    body = {"r": rater, "i": item_id, "m": mode, "o": _seal(secret, view_id, order),
            "t": round(time.time() if now is None else now, 3), "v": view_id}
    payload = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")
    sig = hmac.new(_key(secret), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{sig}"


NEW_VIEW = "Press Next item (or Next pair) to be shown an item again; nothing was saved."


def check(secret: bytes, token, rater: str, item_id: str, mode: str, n_outputs: int,
          now: float | None = None) -> View:
    """The view `token` describes, if it is genuine and matches who submits what; otherwise
    ValueError with a message saying why (nothing is stored)."""
    if not isinstance(token, str) or not token.strip():
        raise ValueError("view_token: give the view_token returned with this item by "
                         f"/next_item or /next_pair (it binds the labels you saw to the methods). {NEW_VIEW}")
    payload, _, sig = token.strip().partition(".")
    good = hmac.new(_key(secret), payload.encode(), hashlib.sha256).hexdigest()
    if not sig or not hmac.compare_digest(sig, good):
        raise ValueError("view_token was not issued by this studio, or its review secret changed "
                         f"since the item was shown. {NEW_VIEW}")
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        view = View(str(body["r"]), str(body["i"]), str(body["m"]), _open(secret, str(body["v"]), body["o"]),
                    float(body["t"]), str(body["v"]))
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"view_token cannot be read. {NEW_VIEW}") from None
    if view.mode != mode:
        raise ValueError(f"view_token was issued for a {'pairwise vote' if view.mode == 'pair' else 'rating'}, "
                         f"not for this. {NEW_VIEW}")
    if view.item_id != item_id:
        raise ValueError(f"view_token was issued for item {view.item_id!r}, not {item_id!r}. {NEW_VIEW}")
    if view.rater != rater:
        raise ValueError(f"this item was shown to rater {view.rater!r}, not {rater!r}: the name changed "
                         f"between showing and submitting. {NEW_VIEW}")
    if sorted(view.order) != sorted(set(view.order)) or any(not 0 <= i < n_outputs for i in view.order):
        raise ValueError(f"view_token does not match this item's outputs any more. {NEW_VIEW}")
    age = (time.time() if now is None else now) - view.issued
    if age > MAX_AGE:
        raise ValueError(f"view_token is {age / 3600:.0f} hours old (a view is valid for "
                         f"{MAX_AGE // 3600} hours). {NEW_VIEW}")
    return view
