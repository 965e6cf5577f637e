"""Reading a huge JSON document one element at a time, in bounded memory.

A ChatGPT export's `conversations.json` is one array that can be hundreds of megabytes;
`json.load` would hold all of it (several times over, as Python objects). `JSONStream`
reads the file in chunks and hands out one value at a time with `json.JSONDecoder.
raw_decode` on a sliding buffer, so memory holds one conversation plus one chunk.

    stream = JSONStream(binary_file)
    for item in stream.array_items():           # a top-level [...]
        ...
    for key, value in stream.object_members():  # a top-level {...}; a member whose value
        ...                                     # is an array can be streamed instead

Errors are `JSONStreamError` with a readable message (and the byte offset reached).
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

CHUNK_SIZE = 256 * 1024
# One value (one conversation) larger than this is refused rather than buffered.
MAX_VALUE_CHARS = 256 * 1024 * 1024
WHITESPACE = " \t\n\r"
# Errors raised within this many characters of the buffer's end may just mean "truncated".
_TAIL = 32


class JSONStreamError(ValueError):
    """The document is not valid JSON, or not shaped as the caller expects."""


class StreamArray:
    """Marks an object member whose value is an array, to be read with `items()`."""

    def __init__(self, stream: JSONStream) -> None:
        self._stream = stream

    def items(self) -> Iterator[Any]:
        return self._stream._array_items()


class JSONStream:
    def __init__(
        self,
        file: IO[bytes],
        *,
        chunk_size: int | None = None,
        max_value_chars: int = MAX_VALUE_CHARS,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self._file = file
        self._chunk_size = chunk_size or CHUNK_SIZE
        self._max_value_chars = max_value_chars
        self._on_read = on_read
        # utf-8-sig: a byte order mark at the start (some editors write one) is dropped.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._buf = ""
        self._pos = 0
        self._eof = False
        self.bytes_read = 0
        self._json = json.JSONDecoder()

    # --- Buffer -------------------------------------------------------------------------

    def _fill(self, at_least: int = 0) -> bool:
        """Read more text into the buffer; False at the end of the file."""
        if self._eof:
            return False
        if self._pos:
            self._buf = self._buf[self._pos :]
            self._pos = 0
        want = max(self._chunk_size, at_least)
        raw = self._file.read(want)
        self.bytes_read += len(raw)
        if self._on_read is not None:
            self._on_read(self.bytes_read)
        try:
            text = self._decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            raise JSONStreamError(
                f"The file is not UTF-8 text (near byte {self.bytes_read}): {exc.reason}."
            ) from exc
        if not raw:
            self._eof = True
        self._buf += text
        return bool(raw)

    def _peek(self) -> str:
        """The next character that is not whitespace ("" at the end), without consuming it."""
        while True:
            buf, pos = self._buf, self._pos
            while pos < len(buf) and buf[pos] in WHITESPACE:
                pos += 1
            self._pos = pos
            if pos < len(buf):
                return buf[pos]
            if not self._fill():
                return ""

    def _expect(self, chars: str, what: str) -> str:
        char = self._peek()
        if not char or char not in chars:
            found = repr(char) if char else "the end of the file"
            raise JSONStreamError(
                f"Not valid JSON: expected {what} near byte {self.bytes_read}, found {found}."
            )
        self._pos += 1
        return char

    def _value(self) -> Any:
        """Decode the next value, reading more of the file until it is complete."""
        self._peek()
        while True:
            try:
                value, end = self._json.raw_decode(self._buf, self._pos)
            except RecursionError:
                raise JSONStreamError(
                    f"The file is too deeply nested to import (near byte {self.bytes_read}): "
                    "it has more levels of [ and { inside each other than any export has."
                ) from None
            except json.JSONDecodeError as exc:
                truncated = exc.msg.startswith("Unterminated string") or (
                    exc.pos >= len(self._buf) - _TAIL
                )
                if self._eof or not truncated:
                    raise JSONStreamError(
                        f"Not valid JSON near byte {self.bytes_read}: {exc.msg}."
                    ) from None
            except ValueError as exc:
                # int() refuses more digits than sys.get_int_max_str_digits() (4300): the
                # limit that keeps converting a number from taking quadratic time.
                if "digits" not in str(exc):
                    raise
                raise JSONStreamError(
                    f"The file has a number with more than {sys.get_int_max_str_digits()} "
                    f"digits (near byte {self.bytes_read}); no export has one."
                ) from None
            else:
                # A number at the very end of the buffer may go on in the next chunk.
                if end < len(self._buf) or self._eof:
                    self._pos = end
                    return value
            pending = len(self._buf) - self._pos
            if pending > self._max_value_chars:
                raise JSONStreamError(
                    f"One entry is larger than {self._max_value_chars // (1024 * 1024)} MiB; "
                    "it cannot be imported."
                )
            # Grow the read with the value, so a big value is decoded a few times, not
            # once per chunk.
            self._fill(at_least=pending)

    # --- Structure ----------------------------------------------------------------------

    def first_char(self) -> str:
        """The first significant character: "[" or "{" for the documents read here."""
        return self._peek()

    def array_items(self) -> Iterator[Any]:
        """The elements of a top-level array, one at a time."""
        self._expect("[", '"["')
        yield from self._after_open_bracket()
        self._end()

    def _array_items(self) -> Iterator[Any]:
        self._expect("[", '"["')
        yield from self._after_open_bracket()

    def _after_open_bracket(self) -> Iterator[Any]:
        if self._peek() == "]":
            self._pos += 1
            return
        while True:
            yield self._value()
            if self._expect(",]", '"," or "]"') == "]":
                return

    def object_members(self, *, stream: frozenset[str] = frozenset()) -> Iterator[tuple[str, Any]]:
        """The members of a top-level object as (key, value).

        For keys in `stream` whose value is an array, the value is a `StreamArray` whose
        `items()` must be consumed before the next member is read.
        """
        self._expect("{", '"{"')
        if self._peek() == "}":
            self._pos += 1
            self._end()
            return
        while True:
            if self._peek() != '"':
                self._expect('"', "a member name in quotes")
            key = self._value()
            self._expect(":", '":"')
            if key in stream and self._peek() == "[":
                yield key, StreamArray(self)
            else:
                yield key, self._value()
            if self._expect(",}", '"," or "}"') == "}":
                break
        self._end()

    def _end(self) -> None:
        if self._peek():
            raise JSONStreamError(
                f"Not valid JSON: unexpected text after the document near byte {self.bytes_read}."
            )
