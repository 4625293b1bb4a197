"""Deterministic POSIX tar headers (ustar, with PAX extended headers when needed).

Written by hand rather than with :mod:`tarfile` because layers can hold tens of thousands of
small files and the header is most of the per-entry cost; the output is a pure function of
the arguments:

* a field that fits ustar is written in ustar, octal numbers zero-padded and NUL-terminated;
* a field that does not (a name over 100 bytes or not ASCII, a link target likewise, a size
  of 8 GiB or more, an id over 2 097 151, a negative or huge mtime, a user or group name over
  32 bytes or not ASCII) goes in a PAX ``x`` header before the entry, records sorted by key,
  under the fixed name ``././@PaxHeader``; the ustar field then holds a truncated value;
* the ustar ``prefix`` field is never used, so a long name always takes the PAX route;
* device numbers are always ``0000000``.

Readers such as GNU tar, Go's ``archive/tar`` (umoci, containerd, skopeo) and Python's
``tarfile`` all read PAX.
"""

from __future__ import annotations

from zlib import adler32

__all__ = [
    "BLOCK_SIZE",
    "DIRECTORY",
    "END_OF_ARCHIVE",
    "HARDLINK",
    "REGULAR",
    "SYMLINK",
    "HeaderFormatter",
    "header",
    "padding",
]

BLOCK_SIZE = 512
# Two zero blocks end a tar archive.
END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
DIRECTORY = b"5"
_PAX = b"x"

_MAX_ID = 0o7777777  # 7 octal digits in an 8-byte field
_MAX_NUMBER_12 = 0o77777777777  # 11 octal digits in a 12-byte field

_MAGIC_VERSION = b"ustar\x0000"
_DEVICE_NUMBERS = b"0000000\x000000000\x00"
# Everything after gname: the two device numbers, the unused 155-byte prefix and 12 bytes pad.
_TAIL = _DEVICE_NUMBERS + bytes(155 + 12)
# The checksum counts its own field as eight spaces; the constant fields add a fixed amount.
_CONSTANT_SUM = 8 * ord(" ") + sum(_MAGIC_VERSION) + sum(_DEVICE_NUMBERS)
_PAX_NAME = b"././@PaxHeader"
_ZEROS = bytes(BLOCK_SIZE)


def padding(size: int) -> bytes:
    """The NUL bytes that round ``size`` bytes of content up to a whole 512-byte block."""
    return _ZEROS[: -size % BLOCK_SIZE]


# Formatted octal fields with their byte sums, cached: most entries share a few modes, ids
# and one mtime, and formatting plus summing them is a large part of a header's cost.
_FieldCache = dict[tuple[int, ...], tuple[bytes, int]]
_ID_FIELDS: _FieldCache = {}
_MTIME_FIELDS: _FieldCache = {}
_CACHE_LIMIT = 4096


def _ids_field(mode: int, uid: int, gid: int) -> tuple[bytes, int]:
    key = (mode, uid, gid)
    cached = _ID_FIELDS.get(key)
    if cached is None:
        field = b"%07o\x00%07o\x00%07o\x00" % key
        cached = (field, sum(field))
        if len(_ID_FIELDS) < _CACHE_LIMIT:
            _ID_FIELDS[key] = cached
    return cached


def _mtime_field(mtime: int) -> tuple[bytes, int]:
    cached = _MTIME_FIELDS.get((mtime,))
    if cached is None:
        field = b"%011o\x00" % mtime
        cached = (field, sum(field))
        if len(_MTIME_FIELDS) < _CACHE_LIMIT:
            _MTIME_FIELDS[(mtime,)] = cached
    return cached


def _ustar(  # noqa: PLR0917 - positional: called once per entry
    name: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes,
    uname: bytes,
    gname: bytes,
) -> bytes:
    ids, ids_sum = _ids_field(mode, uid, gid)
    mtime_field, mtime_sum = _mtime_field(mtime)
    size_field = b"%011o\x00" % size
    # Only non-zero bytes count: sum the fields' contents, not their NUL padding.
    checksum = (
        _CONSTANT_SUM
        + sum(name)
        + ids_sum
        + sum(size_field)
        + mtime_sum
        + typeflag[0]
        + sum(linkname)
        + sum(uname)
        + sum(gname)
    )
    return b"".join(
        (
            name.ljust(100, b"\x00"),
            ids,
            size_field,
            mtime_field,
            b"%06o\x00 " % checksum,
            typeflag,
            linkname.ljust(100, b"\x00"),
            _MAGIC_VERSION,
            uname.ljust(32, b"\x00"),
            gname.ljust(32, b"\x00"),
            _TAIL,
        )
    )


def _pax_records(records: dict[str, bytes]) -> bytes:
    """``"<length> <key>=<value>\\n"`` records, where length counts the whole record."""
    out = []
    for key in sorted(records):
        body = b" %s=%s\n" % (key.encode("ascii"), records[key])
        length = len(body) + 1
        while len(b"%d" % length) + len(body) != length:
            length += 1
        out.append(b"%d%s" % (length, body))
    return b"".join(out)


def header(
    name: str,
    typeflag: bytes,
    mode: int,
    size: int = 0,
    *,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 0,
    linkname: str = "",
    uname: str = "",
    gname: str = "",
) -> bytes:
    """The header block(s) of one entry: a PAX header first when some field needs one.

    ``name`` is the entry's path as it goes in the archive (a directory's with a trailing
    ``/``). Text must be valid UTF-8 (``UnicodeEncodeError`` otherwise).
    """
    name_bytes = name.encode("utf-8")
    link_bytes = linkname.encode("utf-8") if linkname else b""
    uname_bytes = uname.encode("utf-8") if uname else b""
    gname_bytes = gname.encode("utf-8") if gname else b""
    if (
        len(name_bytes) <= 100
        and len(link_bytes) <= 100
        and name.isascii()
        and link_bytes.isascii()
        and 0 <= size <= _MAX_NUMBER_12
        and 0 <= mtime <= _MAX_NUMBER_12
        and 0 <= uid <= _MAX_ID
        and 0 <= gid <= _MAX_ID
        and ((not uname and not gname) or (_fits_name(uname_bytes) and _fits_name(gname_bytes)))
    ):
        return _ustar(
            name_bytes, typeflag, mode, uid, gid, size, mtime, link_bytes, uname_bytes, gname_bytes
        )
    return _pax_header(
        name_bytes, typeflag, mode, uid, gid, size, mtime, link_bytes, uname_bytes, gname_bytes
    )


def _fits_name(value: bytes) -> bool:
    return len(value) <= 32 and value.isascii()


def _pax_header(  # noqa: PLR0917 - mirrors _ustar
    name: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes,
    uname: bytes,
    gname: bytes,
) -> bytes:
    records: dict[str, bytes] = {}
    if len(name) > 100 or not name.isascii():
        records["path"] = name
        name = name[:100]
    if len(linkname) > 100 or not linkname.isascii():
        records["linkpath"] = linkname
        linkname = linkname[:100]
    if not 0 <= size <= _MAX_NUMBER_12:
        records["size"] = b"%d" % size
        size = 0
    if not 0 <= mtime <= _MAX_NUMBER_12:
        records["mtime"] = b"%d" % mtime
        mtime = 0
    if not 0 <= uid <= _MAX_ID:
        records["uid"] = b"%d" % uid
        uid = 0
    if not 0 <= gid <= _MAX_ID:
        records["gid"] = b"%d" % gid
        gid = 0
    if not _fits_name(uname):
        records["uname"] = uname
        uname = uname[:32]
    if not _fits_name(gname):
        records["gname"] = gname
        gname = gname[:32]
    data = _pax_records(records)
    pax = _ustar(_PAX_NAME, _PAX, 0o644, 0, 0, len(data), 0, b"", b"", b"")
    entry = _ustar(name, typeflag, mode, uid, gid, size, mtime, linkname, uname, gname)
    return pax + data + padding(len(data)) + entry


class HeaderFormatter:
    """Headers for entries that share one ownership and mtime: the common case in a layer.

    Makes the same bytes as :func:`header`, from a template per (type, mode) with the shared
    fields formatted, and their byte sum taken, once; an entry that needs PAX (or differs in
    ownership or mtime) goes through :func:`header`.
    """

    def __init__(self, *, uid: int, gid: int, mtime: int, uname: str, gname: str) -> None:
        self._shared = dict(uid=uid, gid=gid, mtime=mtime, uname=uname, gname=gname)
        uname_bytes, gname_bytes = uname.encode("utf-8"), gname.encode("utf-8")
        self._fast = (
            0 <= uid <= _MAX_ID
            and 0 <= gid <= _MAX_ID
            and 0 <= mtime <= _MAX_NUMBER_12
            and _fits_name(uname_bytes)
            and _fits_name(gname_bytes)
        )
        self._uid, self._gid = uid, gid
        self._mtime_field = _mtime_field(mtime)[0] if self._fast else b""
        # Everything after the typeflag for an entry without a link target.
        self._after_typeflag = b"".join(
            (
                bytes(100),
                _MAGIC_VERSION,
                uname_bytes.ljust(32, b"\x00"),
                gname_bytes.ljust(32, b"\x00"),
                _TAIL,
            )
        )
        # (typeflag, mode) -> (everything after the name as a %-format of the size's digits
        # and the checksum, the byte sum of its constant parts)
        self._templates: dict[tuple[bytes, int], tuple[bytes, int]] = {}

    def header(self, name: str, typeflag: bytes, mode: int, size: int = 0) -> bytes:
        """The header of an entry without a link target, owned and timed as shared."""
        name_bytes = name.encode("utf-8")
        if not (
            self._fast
            and len(name_bytes) <= 100
            and name_bytes.isascii()
            and size <= _MAX_NUMBER_12
        ):
            return header(name, typeflag, mode, size, **self._shared)  # type: ignore[arg-type]
        layout, constant_sum = self._templates.get((typeflag, mode)) or self._template(
            typeflag, mode
        )
        digits = b"%011o" % size
        # The byte sum of the name and the size as zlib.adler32's low half (1 + the sum,
        # modulo 65521), several times faster than sum(); exact here, where 100 ASCII bytes
        # and 11 digits add up to at most 13 305.
        checksum = constant_sum + (adler32(digits, adler32(name_bytes)) & 0xFFFF) - 1
        return name_bytes.ljust(100, b"\x00") + layout % (digits, checksum)

    def _template(self, typeflag: bytes, mode: int) -> tuple[bytes, int]:
        ids, ids_sum = _ids_field(mode, self._uid, self._gid)
        after = typeflag + self._after_typeflag
        layout = b"".join(
            (
                ids,
                b"%s\x00",  # the size
                self._mtime_field,
                b"%06o\x00 ",  # the checksum
                after.replace(b"%", b"%%"),  # a user or group name may hold a %
            )
        )
        # The checksum counts its own field as eight spaces.
        constant_sum = ids_sum + sum(self._mtime_field) + 8 * ord(" ") + sum(after)
        template = self._templates[typeflag, mode] = (layout, constant_sum)
        return template
