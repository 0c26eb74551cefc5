"""API keys and scopes: who may call what. ``keys`` makes, finds and revokes keys (stored
by digest only), ``scopes`` says which key scope satisfies a route's, and ``repository``
holds their SQL, with the stored answers to keyed requests that belong to a key."""

from app.auth.keys import (
    KEY_PREFIX,
    NewKey,
    authenticate,
    bootstrap_admin_key,
    count_active_keys,
    create_key,
    hash_secret,
    list_keys,
    revoke_key,
)
from app.auth.scopes import Principal, check_scope

__all__ = [
    "KEY_PREFIX",
    "NewKey",
    "Principal",
    "authenticate",
    "bootstrap_admin_key",
    "check_scope",
    "count_active_keys",
    "create_key",
    "hash_secret",
    "list_keys",
    "revoke_key",
]
