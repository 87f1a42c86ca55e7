"""Mask passwords in any text that may carry a DSN or a connection string: the one redaction function.

Every place a DSN or a driver error can surface (logs, ``/``, ``/metrics``, ``--check``, exceptions from
asyncpg) passes its text through ``redact``. It masks:

* the password of a ``postgres://`` or ``postgresql://`` URL, up to the *last* ``@`` of the URL, so a
  password written with a raw ``@``, ``:``, ``/``, ``?`` or ``#`` is masked whole (percent-encoded ones
  are masked as written);
* a ``password=`` parameter of a URL's query string (up to the next ``&``);
* a ``password=`` keyword of a libpq connection string (``host=h password=secret``), quoted
  (``password='pa ss'``, with ``\\'`` escapes) or not; ``sslpassword`` and ``PGPASSWORD=`` too.

It errs on the side of masking too much: text around an odd URL may be masked with its password.
"""

from __future__ import annotations

import re

MASK = "***"

# A URL runs to the next whitespace; its user info to the last "@" in that run (greedy), because a
# password may hold a raw "@" and the driver would still be handed everything before the host.
_URL_PASSWORD = re.compile(r"(?i)(postgres(?:ql)?://[^\s:@/]*):\S*@")
# ``key=value`` where the key ends in "password": a URL query parameter (after ? or &) ends at & or #,
# a libpq keyword's value at whitespace unless it is quoted.
_QUERY_PASSWORD = re.compile(r"(?i)([?&]\w*password\s*=)[^&#\s]*")
_KEYWORD_PASSWORD = re.compile(r"(?i)((?:^|(?<=[^\w?&]))\w*password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


def redact(text: str) -> str:
    """Return ``text`` with every password it may carry replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _QUERY_PASSWORD.sub(rf"\1{MASK}", text)
    return _KEYWORD_PASSWORD.sub(rf"\1{MASK}", text)
