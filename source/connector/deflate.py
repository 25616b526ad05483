"""permessage-deflate (RFC 7692) with memory per connection bounded, for chargers that offer it.

OCPP 2.0.1 requires a CSMS to support compression; chargers on metered mobile links use
it. What it costs a server is zlib state kept per connection between messages ("context
takeover"): websockets' defaults (12-bit windows, memLevel 5) keep about 50 KB per
charger, which nearly doubles what a charger costs (docs/benchmark.md; measured with
benchmark/compression.py). Here:

- Our own compressor never keeps its context (`server_no_context_takeover`): the
  connector sends answers and commands, small and few, which gain little from it, and a
  deflate context is the largest piece (window, hash chains and pending buffer).
- The charger's messages (MeterValues, over and over) compress several times better with
  context kept, so the charger may keep it, within a 2 KiB window
  (`client_max_window_bits=11`: one MeterValues frame of 8 values fits; 1 KiB does not,
  and then compression drops to what no context gives): the connector keeps about 9 KB
  to inflate them.
- A charger that does not offer `client_max_window_bits` cannot be told a smaller window
  and would hold us to 32 KiB: it is asked not to keep context at all
  (`client_no_context_takeover`, which RFC 7692 7.1.1.2 lets a server ask of any client),
  so its connection keeps nothing between messages either.

A charger that does not offer the extension gets none (websockets creates the extension
only when negotiated): it costs what it did before compression existed. A compressed
frame is inflated at most to OCPP_MAX_FRAME_SIZE (websockets' max_size counts inflated
bytes), so a small "bomb" is closed with 1009 like any oversized frame.
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.typing import ExtensionParameter

WINDOW_BITS = 11  # 2 KiB windows (see above); the protocol's minimum that zlib supports is 9
# memLevel 4: the compressor's hash table and pending buffer at 4 KiB each instead of 64;
# it is built per message, so this is allocation work per answer, not memory kept.
COMPRESS_SETTINGS = {"memLevel": 4}


class BoundedDeflateFactory(ServerPerMessageDeflateFactory):
    """websockets' server factory with the bounds above: a charger that cannot be given a
    small window is asked to keep no context instead."""

    def __init__(self) -> None:
        super().__init__(
            server_no_context_takeover=True,
            server_max_window_bits=WINDOW_BITS,
            client_max_window_bits=WINDOW_BITS,
            compress_settings=COMPRESS_SETTINGS,
        )
        self._no_client_context = ServerPerMessageDeflateFactory(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=WINDOW_BITS,
            compress_settings=COMPRESS_SETTINGS,
        )

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        if any(name == "client_max_window_bits" for name, _ in params):
            return super().process_request_params(params, accepted_extensions)
        return self._no_client_context.process_request_params(params, accepted_extensions)


PER_MESSAGE_DEFLATE = BoundedDeflateFactory()
