"""Messages shown to clients name no path of the server's machines.

A job's error often carries an operating-system error, and with it a path of the machine
that ran the scheduler (``[Errno 28] No space left on device: '/var/lib/...'``). A client
has no use for the path, and should not learn the layout: each absolute path in such a
text is shown as its last name only.
"""

from __future__ import annotations

import re

_ABSOLUTE = re.compile(r"""(?<![\w:/.~-])/(?:[^\s'"/]+/)+([^\s'"/]+)""")


def public_text(text: str | None) -> str | None:
    """``text`` with every absolute path of two or more names cut to its last name."""
    if not text:
        return text
    return _ABSOLUTE.sub(r"\1", text)
