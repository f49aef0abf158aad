"""Names of a user's host namespace and vCluster (pure functions).

Usernames can be anything JupyterHub accepts (unicode, upper case, leading dashes, very long).
Kubernetes names cannot: a namespace is a DNS-1123 label (≤ 63) and a vCluster name must be a
Helm release name and a DNS-1035 label (≤ 53, starts with a letter: Service ``N-headless``
must be valid). Valid, distinct names come from KubeSpawner's ``safe_slug`` for the username
and a final hash-suffixed clean-up here.

Hashed and plain names never coincide: a hashed name always ends with ``--`` and 10 hex
digits (``HASH_MARK``), and a name that ends like that is never kept as it is, so no user can
pick a name that equals another user's hashed one. Names are not what makes a namespace
someone's, though: ``ownership`` checks that (docs/architecture.md, "Threat model").
"""

from __future__ import annotations

import hashlib
import re
import string

from kubespawner.slugs import safe_slug

NAMESPACE_MAX = 63
VCLUSTER_NAME_MAX = 53
LABEL_VALUE_MAX = 63
_INVALID = re.compile(r"[^a-z0-9-]+")
HASH_MARK = re.compile(r"--[0-9a-f]{10}$")
_HASH_LENGTH = 12   # "--" and 10 hex digits


def dns1035_label(text: str, max_length: int) -> str:
    """``text`` if it already is a DNS-1035 label of at most ``max_length`` characters that does
    not look hashed; else a cleaned-up, truncated form ending in ``--`` and 10 hex digits of its
    SHA-256, so different inputs stay different."""
    if (len(text) <= max_length and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", text)
            and not HASH_MARK.search(text)):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    cleaned = _INVALID.sub("-", text.lower()).strip("-")
    if not cleaned or cleaned[0] not in string.ascii_lowercase:
        cleaned = "x-" + cleaned
    cleaned = cleaned[: max_length - _HASH_LENGTH].rstrip("-")
    return f"{cleaned}--{digest}"


def label_value(username: str) -> str:
    """A valid label value (≤ 63 characters of ``[a-z0-9-]``) for ``username``, distinct for
    distinct names (KubeSpawner's ``safe_slug``); the raw name goes in an annotation."""
    return safe_slug(username, max_length=LABEL_VALUE_MAX)


class UnknownUserId(ValueError):
    """A name template needs the hub's user id, which is not known here."""


def user_fields(username: str, userid: int | str | None) -> dict[str, str]:
    """Fields the name templates may use. ``userid`` None: not known here (the hub's REST API
    does not give it, so the CLI and the services know a user by name only)."""
    fields = {"username": safe_slug(username), "raw_username": username}
    if userid is not None:
        fields["userid"] = str(userid)
    return fields


def expand(template: str, fields: dict[str, str], max_length: int) -> str:
    try:
        text = template.format(**fields)
    except KeyError as e:
        if e.args[0] == "userid":
            raise UnknownUserId(f"name template {template!r} uses {{userid}}, which only the hub knows (its REST API "
                                "does not give it); the user's vCluster is found from a server's saved state once "
                                "the user has started a server") from None
        raise ValueError(f"name template {template!r} uses unknown field {e}; known: {sorted(fields)}") from None
    return dns1035_label(text, max_length)
