"""The embedded broker: kombu's filesystem transport, with messages that appear atomically.

kombu's filesystem channel writes a message straight into the queue folder under its final name, and
a consumer polling the folder can pick the file up while it is still empty; the worker then dies on
an unreadable message. Here a message is written under a name no consumer matches and renamed into
place (atomic within one folder), so a consumer only ever sees whole messages.
Settings use it for `CELERY_BROKER_URL=filesystem://` (see `portal.settings.base`).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]  # kombu's stub names it `message`
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"  # not "<queue>.msg": consumers skip it
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
