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

A value that does not fit in the buffer is not decoded again and again as it grows: its
end is found first by a scan (strings, brackets), its size counted in bytes of the file,
and it is decoded once. A value larger than `max_value_bytes` is skipped by the same scan
without being held, and handed out as an `Oversized` with its size, so that the caller can
skip that one entry and go on: memory holds at most one value of up to that size.

Errors are `JSONStreamError` with a readable message (and the byte offset reached).
"""

from __future__ import annotations

import codecs
import json
import re
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

CHUNK_SIZE = 256 * 1024
# One value (one conversation) larger than this (bytes of the file) is skipped, not held.
MAX_VALUE_BYTES = 32 * 1024 * 1024
WHITESPACE = " \t\n\r"
_SIGNIFICANT = re.compile(r"[^ \t\n\r]")
_WHITESPACE_BYTES = WHITESPACE.encode()
# Errors raised within this many characters of the buffer's end may just mean "truncated".
_TAIL = 32


class JSONStreamError(ValueError):
    """The document is not valid JSON, or not shaped as the caller expects."""


class Oversized:
    """Stands for a value larger than the limit, skipped without being held."""

    def __init__(self, size: int) -> None:
        self.size = size  # bytes of the file it took

    def __repr__(self) -> str:
        return f"Oversized({self.size})"


_OUTSIDE = re.compile(r'["\[\]{}]')
_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[\s,\]}:]")


class _Scan:
    """Finds where one JSON value ends, fed its text piece by piece (nothing is kept)."""

    def __init__(self, first: str) -> None:
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.scalar = first not in '[{"'

    def feed(self, text: str) -> int:
        """The index just past the value's end in `text`, or -1 when it goes on."""
        if self.scalar:
            match = _SCALAR_END.search(text)
            return match.start() if match else -1
        i, n = 0, len(text)
        while i < n:
            if self.escape:
                self.escape = False
                i += 1
            elif self.in_string:
                match = _IN_STRING.search(text, i)
                if match is None:
                    return -1
                i = match.start()
                if text[i] == "\\":
                    if i + 1 >= n:
                        self.escape = True
                        return -1
                    i += 2
                    continue
                self.in_string = False
                i += 1
                if self.depth <= 0:
                    return i
            else:
                match = _OUTSIDE.search(text, i)
                if match is None:
                    return -1
                i = match.end()
                char = match.group()
                if char == '"':
                    self.in_string = True
                elif char in "[{":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth <= 0:
                        return i
        return -1


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


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
        max_value_bytes: int = MAX_VALUE_BYTES,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self._file = file
        self._chunk_size = chunk_size or CHUNK_SIZE
        self._max_value_bytes = max_value_bytes
        self._on_read = on_read
        # utf-8-sig: a byte order mark at the start (some editors write one) is dropped.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._blank: str | None = None  # the last chunk's text, if it was only whitespace
        self.bytes_read = 0
        self._json = json.JSONDecoder()

    # --- Buffer -------------------------------------------------------------------------

    def _read(self) -> tuple[str, int]:
        """The next chunk of the file as (text, its size in bytes); ("", 0) at the end."""
        if self._eof:
            return "", 0
        raw = self._file.read(self._chunk_size)
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
        # Whitespace only (told from the bytes, ten times faster than searching the text):
        # `_peek` then skips the chunk whole.
        self._blank = text if raw and not raw.translate(None, _WHITESPACE_BYTES) else None
        return text, len(raw)

    def _fill(self) -> bool:
        """Read more text into the buffer; False at the end of the file."""
        if self._eof:
            return False
        rest = self._buf[self._pos :]
        text, size = self._read()
        self._buf = rest + text if rest else text
        self._pos = 0
        return bool(size)

    def _peek(self) -> str:
        """The next character that is not whitespace ("" at the end), without consuming it.

        Found with a regex, not a loop over characters, and a chunk of whitespace only is
        skipped whole: a file of gigabytes of spaces (a whitespace bomb) is then skipped at
        the speed of unzipping it, not 50 times slower.
        """
        while True:
            if self._pos or self._buf is not self._blank:
                found = _SIGNIFICANT.search(self._buf, self._pos)
                if found is not None:
                    self._pos = found.start()
                    return self._buf[self._pos]
            self._pos = len(self._buf)
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

    def _decode(self, text: str, pos: int) -> tuple[Any, int]:
        """`raw_decode`, with Python's own limits turned into reasons for people."""
        try:
            return self._json.raw_decode(text, pos)
        except RecursionError:
            raise JSONStreamError(
                f"The file is too deeply nested to import (near byte {self.bytes_read}): "
                "it has more levels of [ and { inside each other than any export has."
            ) from None
        except json.JSONDecodeError:
            raise
        except ValueError as exc:
            # int() refuses more digits than sys.get_int_max_str_digits() (4300): the
            # limit that keeps converting a number from taking quadratic time.
            if "digits" not in str(exc):
                raise
            raise JSONStreamError(
                f"The file has a number with more than {sys.get_int_max_str_digits()} "
                f"digits (near byte {self.bytes_read}); no export has one."
            ) from None

    def _value(self) -> Any:
        """Decode the next value; an `Oversized` for one larger than `max_value_bytes`."""
        if not self._peek():
            raise JSONStreamError(
                f"Not valid JSON: the file ends where a value should be (byte {self.bytes_read})."
            )
        try:
            value, end = self._decode(self._buf, self._pos)
        except json.JSONDecodeError as exc:
            truncated = exc.msg.startswith("Unterminated string") or (
                exc.pos >= len(self._buf) - _TAIL
            )
            if self._eof or not truncated:
                raise JSONStreamError(
                    f"Not valid JSON near byte {self.bytes_read}: {exc.msg}."
                ) from None
        else:
            # A number at the very end of the buffer may go on in the next chunk.
            if end < len(self._buf) or self._eof:
                self._pos = end
                return value
        return self._long_value()

    def _long_value(self) -> Any:
        """A value going on past the buffer: find its end, then decode it once (or skip it)."""
        first = self._buf[self._pos :]
        self._buf, self._pos = "", 0
        size = _utf8_size(first)
        scan = _Scan(first[0])
        pieces = [first]
        oversized = size > self._max_value_bytes
        end = scan.feed(first)
        rest = ""
        while end < 0:
            text, read = self._read()
            if not read and not text:
                break  # the end of the file
            size += read
            end = scan.feed(text)
            if end >= 0:
                rest = text[end:]
                size -= _utf8_size(rest)
                text = text[:end]
            if not oversized and size > self._max_value_bytes:
                oversized = True
                pieces = []
            if not oversized:
                pieces.append(text)
        if oversized:
            if end < 0 and not scan.scalar:
                raise JSONStreamError(
                    f"Not valid JSON: the file ends inside an entry (byte {self.bytes_read})."
                )
            self._buf = rest
            return Oversized(size)
        whole = "".join(pieces)
        pieces = []
        try:
            value, stop = self._decode(whole, 0)
        except json.JSONDecodeError as exc:
            raise JSONStreamError(
                f"Not valid JSON near byte {self.bytes_read}: {exc.msg}."
            ) from None
        self._buf = whole[stop:] + rest if stop < len(whole) else rest
        return value

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
            if not isinstance(key, str):
                raise JSONStreamError(
                    f"Not valid JSON: a member name is too long (near byte {self.bytes_read})."
                )
            self._expect(":", '":"')
            if key in stream and self._peek() == "[":
                yield key, StreamArray(self)
            else:
                value = self._value()
                if isinstance(value, Oversized):
                    raise JSONStreamError(
                        f"The file's {key[:100]!r} is {value.size / 2**20:,.0f} MiB, more "
                        f"than the {self._max_value_bytes / 2**20:,.0f} MiB of the largest "
                        "entry imported (CHAT_IMPORT_MAX_CONVERSATION_BYTES)."
                    )
                yield key, value
            if self._expect(",}", '"," or "}"') == "}":
                break
        self._end()

    def _end(self) -> None:
        if self._peek():
            raise JSONStreamError(
                f"Not valid JSON: unexpected text after the document near byte {self.bytes_read}."
            )
