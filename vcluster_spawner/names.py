"""Names of a user's host namespace and vCluster (pure functions).

Usernames can be anything JupyterHub accepts (unicode, upper case, leading dashes, very long).
Kubernetes names cannot: a namespace is a DNS-1123 label (≤ 63); a vCluster name must be a Helm
release name and a DNS-1035 label (starts with a letter: Service ``N-headless`` must be valid)
and at most 52 characters, because the StatefulSet controller labels each control plane pod
``controller-revision-hash: <name>-<hash>`` with a hash of up to 10 characters
(kubernetes/kubernetes pkg/controller/history/controller_history.go, ``ControllerRevisionName``
and ``HashControllerRevision``, v1.36), and a label value has at most 63.

Three kinds of names never coincide, so no user can choose a name that lands on another's:

- a *plain* name has no ``--`` at all;
- a *hashed* name ends with ``--`` and 16 hex digits (64 bits of SHA-256 of what it was made
  from: a colliding name costs 2^32 work at the least, not a CPU-hour) and has no other ``--``;
- a warm pool member's name (pool.py) has ``--pool`` in it, which no template output keeps.

The ``{username}`` field of the templates is itself plain or hashed (``user_slug``), so the
hash of a hashed name covers the raw user name. Names are not what makes a namespace someone's,
though: ``gate.py`` finds a user's vCluster by the owner its namespace records
(docs/architecture.md, "Threat model").
"""

from __future__ import annotations

import hashlib
import re
import string

from kubespawner.slugs import safe_slug

NAMESPACE_MAX = 63
VCLUSTER_NAME_MAX = 52
LABEL_VALUE_MAX = 63
SLUG_MAX = 40
HASH_DIGITS = 16
HASH_MARK = re.compile(rf"--[0-9a-f]{{{HASH_DIGITS}}}$")
_HASH_LENGTH = 2 + HASH_DIGITS
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_SLUG = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_RUNS = re.compile(r"[^a-z0-9]+")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]


def _keeps(text: str) -> bool:
    """No ``--`` but a final hash mark: the shape of a plain or a hashed name."""
    return "--" not in (text[: -_HASH_LENGTH] if HASH_MARK.search(text) else text)


def _hashed(text: str, cleaned: str, max_length: int) -> str:
    cleaned = cleaned[: max_length - _HASH_LENGTH].strip("-") or "x"
    return f"{cleaned}--{digest(text)}"


def user_slug(username: str) -> str:
    """The ``{username}`` of the name templates: ``username`` itself when it is lower-case
    letters, digits and single dashes (≤ 40 characters), else its cleaned-up form and
    ``--`` and 16 hex digits of its SHA-256."""
    if len(username) <= SLUG_MAX and _SLUG.fullmatch(username) and "--" not in username:
        return username
    return _hashed(username, _RUNS.sub("-", username.lower()).strip("-"), SLUG_MAX)


def dns1035_label(text: str, max_length: int) -> str:
    """``text`` if it already is a DNS-1035 label of at most ``max_length`` characters shaped as
    a plain or a hashed name; else a cleaned-up, truncated form ending in ``--`` and 16 hex
    digits of its SHA-256, so different inputs stay different."""
    if len(text) <= max_length and _DNS1035.fullmatch(text) and _keeps(text):
        return text
    cleaned = _RUNS.sub("-", text.lower()).strip("-")
    if not cleaned or cleaned[0] not in string.ascii_lowercase:
        cleaned = "x-" + cleaned
    return _hashed(text, cleaned, max_length)


def label_value(username: str) -> str:
    """A valid label value (≤ 63 characters of ``[a-z0-9-]``) for ``username`` (KubeSpawner's
    ``safe_slug``; the raw name goes in an annotation). A selector only: it narrows a list,
    and the owner annotation decides (gate.py), so its 32-bit hash is no ownership claim."""
    return safe_slug(username, max_length=LABEL_VALUE_MAX)


class UnknownUserId(ValueError):
    """A name template needs the hub's user id, which is not known here."""


def user_fields(username: str, userid: int | str | None) -> dict[str, str]:
    """Fields the name templates may use. ``userid`` None: not known here (the hub's REST API
    does not give it, so the CLI and the services know a user by name only)."""
    fields = {"username": user_slug(username), "raw_username": username}
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
