"""The `oci_layer` target and its fields: one layer of an `oci_image`.

Pants imports this module itself, as it does target_types.py (which registers `oci_layer` with
`oci_image`): the standard library, Pants and the stdlib-only parts of `pants_oci.core` only.
"""

from __future__ import annotations

from typing import Optional

from pants.engine.addresses import Address
from pants.engine.target import COMMON_TARGET_FIELDS, Dependencies, IntField, StringField, Target
from pants.util.strutil import help_text

from pants_oci.core.validation import check_id
from pants_oci.field_checks import absolute_path, checked, octal_mode


class OciLayerDestinationField(StringField):
    alias = "destination"
    value: str
    default = "/"
    help = help_text(
        """
        The absolute directory in the image under which this layer's files go. A file
        `src/app/main.py` with destination `"/opt"` lands at `/opt/src/app/main.py`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        assert value is not None  # the field has a default
        return absolute_path(cls.alias, value, address)


class OciLayerModeField(StringField):
    alias = "mode"
    help = help_text(
        """
        Permission bits for every file of this layer, as an octal string such as `"0644"` or
        `"0755"`. Unset: executables get 0755 and other files 0644, whatever the checkout's
        umask. Directories: see `directory_mode`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        return octal_mode(cls.alias, value, address)


class OciLayerDirectoryModeField(StringField):
    alias = "directory_mode"
    help = help_text(
        """
        Permission bits of the directories this layer creates, as an octal string such as
        `"0755"` (the default) or `"0750"`. Directories that the base image or a lower layer
        already has are left as they are: the layer writes no entry for them, so `/tmp` stays
        sticky, a home directory keeps its owner, and `/var/run` stays a symlink.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        return octal_mode(cls.alias, value, address)


class _IdField(IntField):
    @classmethod
    def compute_value(cls, raw_value: Optional[int], address: Address) -> Optional[int]:
        value = super().compute_value(raw_value, address)
        if value is None:
            return None
        return checked(cls.alias, address, lambda id_: check_id(id_, cls.alias), value)


class OciLayerUidField(_IdField):
    alias = "uid"
    help = help_text(
        """
        The owner (user id) of every file of this layer and of the directories it creates
        (not of those the base already has). Unset: 0 (root).
        """
    )


class OciLayerGidField(_IdField):
    alias = "gid"
    help = help_text(
        """
        The group id of every file of this layer and of the directories it creates (not of
        those the base already has). Unset: 0 (root).
        """
    )


class OciLayerDependenciesField(Dependencies):
    help = help_text(
        """
        What makes up this layer, under its `destination`: sources (`files`, `resources`,
        `python_sources`, `shell_sources`, ...) at the path Pants gives them elsewhere (within
        their source root for Python code and `resources`, from the build root for `files` and
        `shell_sources`), and what `pants package` builds of other targets (`pex_binary`,
        `archive`, ...) at its output path. A dependency with nothing to put in a layer
        (`python_requirement`, a bare `target`) is an error.
        """
    )


class OciLayerTarget(Target):
    alias = "oci_layer"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        OciLayerDependenciesField,
        OciLayerDestinationField,
        OciLayerModeField,
        OciLayerDirectoryModeField,
        OciLayerUidField,
        OciLayerGidField,
    )
    help = help_text(
        """
        One layer of an `oci_image`: a group of files, resources and packages placed under a
        destination directory.

        Split content into layers by how often it changes: an image pulled or pushed again
        after a change moves only the layers whose content changed. Put third-party
        dependencies in one layer and your own code in another.

        Example:

            oci_layer(name="assets", dependencies=[":static"], destination="/srv")
            oci_image(name="web", dependencies=[":assets", ":server"])
        """
    )
