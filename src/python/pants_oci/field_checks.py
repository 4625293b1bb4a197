"""How a BUILD field's value is refused: the checks of core/validation.py (and a few of the
backend's own), each as an error naming the target, the field, the value and what to do."""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, TypeVar

from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException
from pants.util.strutil import softwrap

from pants_oci.core.errors import InvalidValueError
from pants_oci.core.validation import check_absolute_path

T = TypeVar("T")


def field_error(alias: str, address: Address, value: object, problem: str) -> InvalidFieldException:
    """The one shape of a bad-field message: where, which field, what value, what to do."""
    return InvalidFieldException(
        softwrap(
            f"""
            The `{alias}` field in target {address} has {value!r}, which {problem}
            """
        )
    )


def checked(alias: str, address: Address, check: Callable[[Any], T], value: Any) -> T:
    """`check(value)` from core/validation.py, its refusal as this field's error."""
    try:
        return check(value)
    except InvalidValueError as exc:
        raise field_error(alias, address, value, exc.problem) from None


def absolute_path(alias: str, value: str, address: Address) -> str:
    return checked(alias, address, lambda path: check_absolute_path(path, alias), value)


def octal_mode(alias: str, value: Optional[str], address: Address) -> Optional[str]:
    if value is not None and not re.fullmatch(r"0?[0-7]{3,4}", value):
        raise field_error(
            alias,
            address,
            value,
            'is not octal permission bits: use a string such as "0644" or "0755".',
        )
    return value
