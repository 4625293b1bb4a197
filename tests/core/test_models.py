"""Manifests, indexes and configs: raw bytes preserved, canonical output, dispatch, platforms."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from pydantic import ValidationError

from pants_oci.core import media_types
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import (
    DigestMismatchError,
    DocumentError,
    OCIError,
    UnsupportedMediaTypeError,
)
from pants_oci.core.models import (
    ContainerConfig,
    Descriptor,
    DockerManifest,
    DockerManifestList,
    History,
    ImageConfig,
    OCIIndex,
    OCIManifest,
    Platform,
    RootFS,
    parse_manifest,
)
from pants_oci.core.platforms import normalize_architecture, platform_matches

CONFIG_DIGEST = "sha256:" + "c" * 64
LAYER1_DIGEST = "sha256:" + "1" * 64
LAYER2_DIGEST = "sha256:" + "2" * 64
AMD64_DIGEST = "sha256:" + "a" * 64
ARM64_DIGEST = "sha256:" + "b" * 64

# Written the way no serialiser would: tabs, reversed keys, spaces before colons, CRLF,
# a trailing newline, an escaped slash, and fields no model declares.
OCI_MANIFEST_RAW = (
    b'{\r\n\t"annotations" : {"org.opencontainers.image.source": "https:\\/\\/example.com/app",'
    b' "org.opencontainers.image.created": "2024-01-02T03:04:05Z"},\r\n'
    b'\t"layers": [\r\n'
    b'\t\t{"size": 32654, "digest": "' + LAYER1_DIGEST.encode() + b'",'
    b' "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"},\r\n'
    b'\t\t{"urls": ["https://mirror.example.com/blob"], "size": 16724,'
    b' "digest": "' + LAYER2_DIGEST.encode() + b'",'
    b' "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",'
    b' "annotations": {"x-layer": "yes"}}\r\n'
    b"\t],\r\n"
    b'\t"config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 7023,'
    b' "digest": "' + CONFIG_DIGEST.encode() + b'"},\r\n'
    b'\t"x-vendor-extension": {"nested": [1, 2.50, null, true]},\r\n'
    b'\t"mediaType": "application/vnd.oci.image.manifest.v1+json",\r\n'
    b'\t"schemaVersion": 2\r\n'
    b"}\n"
)

OCI_INDEX_RAW = b"""{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "%(amd64)s",
      "size": 1024,
      "platform": {"architecture": "amd64", "os": "linux"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "%(arm64)s",
      "size": 1025,
      "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "%(win)s",
      "size": 1026,
      "platform": {"architecture": "amd64", "os": "windows",
                   "os.version": "10.0.20348.2227", "os.features": ["win32k"]}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "%(attestation)s",
      "size": 840,
      "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
      "platform": {"architecture": "unknown", "os": "unknown"}
    }
  ],
  "annotations": {"org.opencontainers.image.ref.name": "1.0"},
  "x-unknown": "kept"
}""" % {
    b"amd64": AMD64_DIGEST.encode(),
    b"arm64": ARM64_DIGEST.encode(),
    b"win": b"sha256:" + b"d" * 64,
    b"attestation": b"sha256:" + b"e" * 64,
}

# Docker's registry indents with three spaces.
DOCKER_MANIFEST_RAW = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1457,
      "digest": "%(config)s"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 2220094,
         "digest": "%(layer)s"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "size": 1000,
         "digest": "%(layer2)s",
         "urls": ["https://mcr.microsoft.com/v2/windows/blobs/x"]
      }
   ]
}""" % {
    b"config": CONFIG_DIGEST.encode(),
    b"layer": LAYER1_DIGEST.encode(),
    b"layer2": LAYER2_DIGEST.encode(),
}

DOCKER_LIST_RAW = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 527,
         "digest": "%(amd64)s",
         "platform": {
            "architecture": "amd64",
            "os": "linux"
         }
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 527,
         "digest": "%(arm)s",
         "platform": {
            "architecture": "arm",
            "os": "linux",
            "variant": "v7"
         }
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 527,
         "digest": "%(arm64)s",
         "platform": {
            "architecture": "arm64",
            "os": "linux",
            "variant": "v8"
         }
      }
   ]
}""" % {
    b"amd64": AMD64_DIGEST.encode(),
    b"arm": b"sha256:" + b"7" * 64,
    b"arm64": ARM64_DIGEST.encode(),
}

# A Docker-built config: nanosecond times, explicit nulls, and many fields OCI does not name.
IMAGE_CONFIG_RAW = (
    '{"architecture":"arm64","config":{"Hostname":"","Domainname":"","User":"app",'
    '"AttachStdin":false,"ExposedPorts":{"8080/tcp":{}},"Tty":false,'
    '"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],'
    '"Cmd":["sh"],"Image":"sha256:' + "9" * 64 + '","Volumes":{"/data":{}},'
    '"WorkingDir":"/app","Entrypoint":null,"OnBuild":null,"Labels":{"maintainer":"Zoë ☕"},'
    '"StopSignal":"SIGTERM"},'
    '"container":"3f2a","container_config":{"Cmd":["/bin/sh","-c","#(nop) ",'
    '"CMD [\\"sh\\"]"],"Labels":null},'
    '"created":"2023-07-18T23:19:33.655005962Z","docker_version":"20.10.23",'
    '"history":[{"created":"2023-07-18T23:19:33.538571854Z",'
    '"created_by":"/bin/sh -c #(nop) ADD file:7e9002edaafd4e4579b65c8f0aaabde1aeb7fd3f8d95579f7'
    'fd3443cef785fd1 in / "},'
    '{"created":"2023-07-18T23:19:33.655005962Z","created_by":"/bin/sh -c #(nop)  CMD [\\"sh\\"]",'
    '"empty_layer":true}],'
    '"os":"linux","rootfs":{"type":"layers","diff_ids":["' + LAYER1_DIGEST + '"]},'
    '"variant":"v8"}'
).encode("utf-8")

ALL_DOCUMENTS = [
    (OCI_MANIFEST_RAW, OCIManifest),
    (OCI_INDEX_RAW, OCIIndex),
    (DOCKER_MANIFEST_RAW, DockerManifest),
    (DOCKER_LIST_RAW, DockerManifestList),
]


# --- Raw bytes are preserved ------------------------------------------------------------


@pytest.mark.parametrize(("raw", "cls"), ALL_DOCUMENTS, ids=lambda v: getattr(v, "__name__", ""))
def test_parsed_manifests_keep_their_exact_bytes_and_digest(raw: bytes, cls: type) -> None:
    document = parse_manifest(raw)
    assert type(document) is cls
    assert document.to_bytes() == raw
    assert document.raw == raw
    assert document.digest == Digest("sha256", hashlib.sha256(raw).hexdigest())
    assert document.size == len(raw)
    # Our own serialisation differs, which is exactly why the raw bytes must be kept.
    assert document.canonical_bytes() != raw


def test_parsed_config_keeps_its_exact_bytes() -> None:
    config = ImageConfig.from_bytes(IMAGE_CONFIG_RAW)
    assert config.to_bytes() == IMAGE_CONFIG_RAW
    assert config.digest == sha256_of_bytes(IMAGE_CONFIG_RAW)
    assert config.created == "2023-07-18T23:19:33.655005962Z"  # nanoseconds survive


def test_from_bytes_accepts_bytearray_and_memoryview() -> None:
    assert OCIManifest.from_bytes(bytearray(OCI_MANIFEST_RAW)).to_bytes() == OCI_MANIFEST_RAW
    assert OCIManifest.from_bytes(memoryview(OCI_MANIFEST_RAW)).to_bytes() == OCI_MANIFEST_RAW


def test_descriptor_of_a_parsed_document_points_at_its_raw_bytes() -> None:
    index = parse_manifest(OCI_INDEX_RAW)
    descriptor = index.descriptor()
    assert descriptor.media_type == media_types.OCI_INDEX
    assert descriptor.digest == sha256_of_bytes(OCI_INDEX_RAW)
    assert descriptor.size == len(OCI_INDEX_RAW)
    config = ImageConfig.from_bytes(IMAGE_CONFIG_RAW)
    assert config.descriptor().media_type == media_types.OCI_CONFIG
    docker = config.descriptor(media_type=media_types.DOCKER_CONFIG)
    assert docker.media_type == media_types.DOCKER_CONFIG
    assert docker.digest == sha256_of_bytes(IMAGE_CONFIG_RAW)


# --- Fields are read with the specs' names ----------------------------------------------


def test_oci_manifest_fields() -> None:
    manifest = OCIManifest.from_bytes(OCI_MANIFEST_RAW)
    assert manifest.schema_version == 2
    assert manifest.media_type == media_types.OCI_MANIFEST
    assert manifest.config.digest == Digest.parse(CONFIG_DIGEST)
    assert manifest.config.size == 7023
    assert [layer.media_type for layer in manifest.layers] == [
        media_types.OCI_LAYER_GZIP,
        media_types.OCI_LAYER_ZSTD,
    ]
    assert manifest.layers[1].urls == ("https://mirror.example.com/blob",)
    assert manifest.layers[1].annotations == {"x-layer": "yes"}
    assert manifest.annotations is not None
    assert manifest.annotations["org.opencontainers.image.source"] == "https://example.com/app"
    assert manifest.model_extra == {"x-vendor-extension": {"nested": [1, 2.5, None, True]}}


def test_index_fields_and_platform_aliases() -> None:
    index = parse_manifest(OCI_INDEX_RAW)
    assert isinstance(index, OCIIndex)
    windows = index.manifests[2].platform
    assert windows is not None
    assert windows.os_version == "10.0.20348.2227"
    assert windows.os_features == ("win32k",)
    assert json.loads(windows.model_dump_json())["os.version"] == "10.0.20348.2227"


def test_image_config_fields() -> None:
    config = ImageConfig.from_bytes(IMAGE_CONFIG_RAW)
    assert config.platform == Platform(architecture="arm64", os="linux", variant="v8")
    assert config.config is not None
    assert config.config.user == "app"
    assert config.config.env is not None and config.config.env[1] == "LANG=C.UTF-8"
    assert config.config.cmd == ("sh",)
    assert config.config.entrypoint is None
    assert config.config.exposed_ports == {"8080/tcp": {}}
    assert config.config.volumes == {"/data": {}}
    assert config.config.working_dir == "/app"
    assert config.config.labels == {"maintainer": "Zoë ☕"}
    assert config.config.stop_signal == "SIGTERM"
    assert config.config.model_extra is not None
    assert config.config.model_extra["Hostname"] == ""
    assert config.rootfs.diff_ids == (Digest.parse(LAYER1_DIGEST),)
    assert config.history is not None and config.history[1].empty_layer is True
    assert config.model_extra is not None and config.model_extra["docker_version"] == "20.10.23"


# --- Built and changed documents serialise canonically ----------------------------------


def _built_manifest(**overrides: object) -> OCIManifest:
    fields: dict[str, object] = {
        "config": Descriptor(media_type=media_types.OCI_CONFIG, digest=CONFIG_DIGEST, size=7023),
        "layers": [
            Descriptor(media_type=media_types.OCI_LAYER_GZIP, digest=LAYER1_DIGEST, size=32654)
        ],
    }
    fields.update(overrides)
    return OCIManifest(**fields)


def test_built_manifest_has_exact_canonical_bytes() -> None:
    manifest = _built_manifest(annotations={"a": "b"})
    assert manifest.raw is None
    assert manifest.to_bytes() == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
        b'"digest":"' + CONFIG_DIGEST.encode() + b'","size":7023},'
        b'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
        b'"digest":"' + LAYER1_DIGEST.encode() + b'","size":32654}],'
        b'"annotations":{"a":"b"}}'
    )
    assert manifest.digest == sha256_of_bytes(manifest.to_bytes())


def test_descriptor_of_an_artifact_manifest_carries_its_artifact_type() -> None:
    manifest = _built_manifest(artifact_type="application/vnd.example.sbom")
    descriptor = manifest.descriptor(annotations={"a": "b"})
    assert descriptor.artifact_type == "application/vnd.example.sbom"
    assert descriptor.media_type == media_types.OCI_MANIFEST
    assert descriptor.annotations == {"a": "b"}
    assert descriptor.size == len(manifest.to_bytes())


def test_canonical_bytes_do_not_depend_on_how_a_document_was_built() -> None:
    by_name = _built_manifest()
    by_alias = OCIManifest.model_validate(
        {
            "layers": [
                {"size": 32654, "digest": LAYER1_DIGEST, "mediaType": media_types.OCI_LAYER_GZIP}
            ],
            "config": {"digest": CONFIG_DIGEST, "size": 7023, "mediaType": media_types.OCI_CONFIG},
            "mediaType": media_types.OCI_MANIFEST,
            "schemaVersion": 2,
        }
    )
    assert by_name.to_bytes() == by_alias.to_bytes()
    assert by_name.digest == by_alias.digest
    assert by_name == by_alias
    # Re-parsing canonical bytes gives the same bytes back.
    assert OCIManifest.from_bytes(by_name.to_bytes()).to_bytes() == by_name.to_bytes()


def test_canonical_output_is_compact_utf8_without_trailing_newline() -> None:
    config = ImageConfig(
        architecture="amd64",
        os="linux",
        config=ContainerConfig(labels={"description": "café ☕"}),
        rootfs=RootFS(),
    )
    data = config.to_bytes()
    assert "café ☕".encode() in data
    assert b"\\u" not in data
    assert not data.endswith(b"\n")
    assert b": " not in data and b", " not in data
    assert data == json.dumps(json.loads(data), separators=(",", ":"), ensure_ascii=False).encode()


def test_absent_optional_fields_are_omitted_not_null() -> None:
    manifest = _built_manifest()
    data = manifest.to_bytes()
    assert b"null" not in data
    for absent in [b"annotations", b"subject", b"artifactType", b"urls", b"platform", b"data"]:
        assert absent not in data
    config = ImageConfig(
        architecture="amd64",
        os="linux",
        config=ContainerConfig(cmd=["sh"]),
        rootfs=RootFS(diff_ids=[LAYER1_DIGEST]),
        history=[History(created_by="build")],
    )
    assert b"null" not in config.to_bytes()
    assert json.loads(config.to_bytes()) == {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [LAYER1_DIGEST]},
        "history": [{"created_by": "build"}],
    }


def test_config_serialises_with_docker_names_in_model_order() -> None:
    config = ImageConfig(
        os="linux",
        architecture="arm64",
        variant="v8",
        config=ContainerConfig(
            working_dir="/app",
            env=["A=1"],
            user="1000",
            entrypoint=["/app/run"],
            exposed_ports={"80/tcp": {}},
            labels={"k": "v"},
        ),
        rootfs=RootFS(diff_ids=[LAYER1_DIGEST]),
    )
    document = json.loads(config.to_bytes())
    assert list(document) == ["architecture", "os", "variant", "config", "rootfs"]
    assert list(document["config"]) == [
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "WorkingDir",
        "Labels",
    ]


def test_replace_drops_the_raw_bytes_and_keeps_unknown_fields() -> None:
    manifest = OCIManifest.from_bytes(OCI_MANIFEST_RAW)
    changed = manifest.replace(annotations={"new": "value"})
    assert changed.raw is None
    assert changed.to_bytes() == changed.canonical_bytes()
    assert changed.digest != manifest.digest
    document = json.loads(changed.to_bytes())
    assert document["annotations"] == {"new": "value"}
    # A field no model declares survives the change (with its null inside).
    assert document["x-vendor-extension"] == {"nested": [1, 2.5, None, True]}
    assert list(document)[-1] == "x-vendor-extension"
    # The original still has its bytes.
    assert manifest.to_bytes() == OCI_MANIFEST_RAW


def test_replace_validates_and_accepts_json_names() -> None:
    manifest = _built_manifest()
    assert manifest.replace(artifactType="application/x-thing").artifact_type == (
        "application/x-thing"
    )
    with pytest.raises(ValidationError, match="digest"):
        manifest.replace(config={"mediaType": "x", "digest": "sha256:short", "size": 1})
    with pytest.raises(ValidationError, match="mediaType"):
        manifest.replace(mediaType=media_types.DOCKER_MANIFEST)


def test_replacing_config_keeps_extras_and_docker_fields() -> None:
    config = ImageConfig.from_bytes(IMAGE_CONFIG_RAW)
    assert config.config is not None
    new_config = config.replace(config=config.config.model_copy(update={"cmd": ("run",)}))
    document = json.loads(new_config.to_bytes())
    assert document["config"]["Cmd"] == ["run"]
    assert document["config"]["Hostname"] == ""
    assert document["docker_version"] == "20.10.23"
    # Our own optional fields that were null are now simply absent.
    assert "Entrypoint" not in document["config"]


def test_model_copy_with_update_drops_the_raw_bytes() -> None:
    manifest = OCIManifest.from_bytes(OCI_MANIFEST_RAW)
    updated = manifest.model_copy(update={"annotations": {"a": "b"}})
    assert updated.raw is None
    assert json.loads(updated.to_bytes())["annotations"] == {"a": "b"}
    # Without changes, a copy is the same document and keeps the bytes.
    assert manifest.model_copy().to_bytes() == OCI_MANIFEST_RAW
    assert manifest.model_copy(deep=True).to_bytes() == OCI_MANIFEST_RAW


def test_documents_are_frozen() -> None:
    manifest = OCIManifest.from_bytes(OCI_MANIFEST_RAW)
    with pytest.raises(ValidationError, match="frozen"):
        manifest.annotations = {}  # type: ignore[misc]
    with pytest.raises(AttributeError):
        manifest.layers.append(manifest.config)  # type: ignore[attr-defined]


def test_documents_are_equal_when_their_bytes_are() -> None:
    parsed = OCIManifest.from_bytes(OCI_MANIFEST_RAW)
    canonical = OCIManifest.from_bytes(parsed.canonical_bytes())
    # Same content, different bytes: different documents with different digests.
    assert parsed != canonical
    assert parsed.digest != canonical.digest
    assert parsed == OCIManifest.from_bytes(OCI_MANIFEST_RAW)
    assert canonical == parsed.replace()
    assert len({parsed, OCIManifest.from_bytes(OCI_MANIFEST_RAW), canonical}) == 2


# --- Dispatch, and what is refused ------------------------------------------------------


@pytest.mark.parametrize(
    "media_type",
    [media_types.DOCKER_MANIFEST_SCHEMA1, media_types.DOCKER_MANIFEST_SCHEMA1_SIGNED],
)
def test_schema1_is_rejected_with_a_fix(media_type: str) -> None:
    raw = json.dumps(
        {
            "schemaVersion": 1,
            "mediaType": media_type,
            "name": "library/old",
            "tag": "latest",
            "architecture": "amd64",
            "fsLayers": [{"blobSum": LAYER1_DIGEST}],
            "history": [{"v1Compatibility": "{}"}],
        }
    ).encode()
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        parse_manifest(raw)
    message = str(caught.value)
    assert "schema 1" in message
    assert media_type in message
    assert "deprecated" in message
    assert "push it with a current docker" in message
    assert "skopeo copy --format v2s2" in message
    assert isinstance(caught.value, DocumentError) and isinstance(caught.value, OCIError)


def test_schema1_is_recognised_without_a_media_type() -> None:
    raw = b'{"schemaVersion": 1, "name": "library/old", "fsLayers": []}'
    with pytest.raises(UnsupportedMediaTypeError, match="schema 1"):
        parse_manifest(raw)
    with pytest.raises(UnsupportedMediaTypeError, match="prettyjws"):
        parse_manifest(b'{"signatures": []}', media_types.DOCKER_MANIFEST_SCHEMA1_SIGNED)


def test_unknown_media_types_are_rejected() -> None:
    raw = json.dumps(
        {"mediaType": "application/vnd.oci.artifact.manifest.v1+json", "blobs": []}
    ).encode()
    with pytest.raises(
        UnsupportedMediaTypeError, match=r"application/vnd\.oci\.artifact\.manifest"
    ):
        parse_manifest(raw)


def test_content_type_decides_when_the_document_has_no_media_type() -> None:
    raw = DOCKER_MANIFEST_RAW.replace(
        b'"mediaType": "application/vnd.docker.distribution.manifest.v2+json",', b""
    )
    assert b"manifest.v2" not in raw
    manifest = parse_manifest(raw, media_types.DOCKER_MANIFEST + "; charset=utf-8")
    assert isinstance(manifest, DockerManifest)
    assert manifest.to_bytes() == raw


def test_document_media_type_wins_over_content_type() -> None:
    # The digest covers the document, not the HTTP header.
    assert isinstance(parse_manifest(OCI_INDEX_RAW, media_types.OCI_MANIFEST), OCIIndex)


def test_shape_decides_when_nothing_names_the_type() -> None:
    index = {"schemaVersion": 2, "manifests": []}
    manifest = {
        "schemaVersion": 2,
        "config": {"mediaType": media_types.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": 1},
        "layers": [],
    }
    assert isinstance(parse_manifest(json.dumps(index).encode(), "application/json"), OCIIndex)
    assert isinstance(parse_manifest(json.dumps(manifest).encode()), OCIManifest)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "must be a JSON object, got a JSON list"),
        (b'{"mediaType": 5}', "mediaType must be a string"),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}',
            "manifests",
        ),
        (
            b'{"schemaVersion": 3, "manifests": []}',
            "schemaVersion",
        ),
    ],
)
def test_malformed_manifests_raise_document_errors(raw: bytes, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        parse_manifest(raw)


def test_a_class_refuses_another_kind_of_document() -> None:
    with pytest.raises(DocumentError, match="OCIManifest documents have mediaType"):
        OCIManifest.from_bytes(DOCKER_MANIFEST_RAW)
    with pytest.raises(DocumentError, match="not a valid DockerManifestList"):
        DockerManifestList.from_bytes(OCI_INDEX_RAW)


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        ({"mediaType": "x", "digest": "sha256:abc", "size": 1}, "64 lowercase hexadecimal"),
        ({"mediaType": "x", "digest": 5, "size": 1}, "a digest must be a string"),
        ({"mediaType": "x", "digest": LAYER1_DIGEST, "size": -1}, "greater than or equal to 0"),
        ({"mediaType": "x", "digest": LAYER1_DIGEST, "size": True}, "valid integer"),
        ({"mediaType": "x", "digest": LAYER1_DIGEST, "size": "12"}, "valid integer"),
        ({"mediaType": "x", "digest": LAYER1_DIGEST, "size": 1, "data": "@@"}, "base64"),
        ({"digest": LAYER1_DIGEST, "size": 1}, "mediaType"),
    ],
)
def test_descriptor_validation(descriptor: dict[str, object], message: str) -> None:
    raw = json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode()
    with pytest.raises(DocumentError, match=message):
        OCIIndex.from_bytes(raw)


def test_rootfs_type_must_be_layers() -> None:
    raw = IMAGE_CONFIG_RAW.replace(b'"type":"layers"', b'"type":"squashfs"')
    with pytest.raises(DocumentError, match="layers"):
        ImageConfig.from_bytes(raw)


# --- Descriptors ------------------------------------------------------------------------


def test_descriptor_for_bytes() -> None:
    descriptor = Descriptor.for_bytes(media_types.OCI_EMPTY_JSON, b"{}")
    assert descriptor.digest == Digest(
        "sha256", "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert descriptor.size == 2
    assert descriptor.data is None
    assert json.loads(descriptor.model_dump_json()) == {
        "mediaType": media_types.OCI_EMPTY_JSON,
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    }


def test_descriptor_embedded_data_is_verified() -> None:
    embedded = Descriptor.for_bytes(
        media_types.OCI_EMPTY_JSON, b"{}", embed=True, annotations={"k": "v"}
    )
    assert embedded.data == "e30="
    assert embedded.annotations == {"k": "v"}
    assert embedded.embedded_data() == b"{}"
    tampered = embedded.model_copy(update={"data": "W10="})  # "[]"
    with pytest.raises(DigestMismatchError, match="data embedded in descriptor"):
        tampered.embedded_data()
    wrong_size = embedded.model_copy(update={"size": 3})
    with pytest.raises(ValueError, match="is 2 bytes, but the descriptor says 3"):
        wrong_size.embedded_data()


def test_descriptor_digest_serialises_as_a_string() -> None:
    descriptor = Descriptor(media_type="x", digest=Digest.parse(LAYER1_DIGEST), size=0)
    assert json.loads(descriptor.model_dump_json())["digest"] == LAYER1_DIGEST
    assert descriptor.model_dump()["digest"] == LAYER1_DIGEST
    assert descriptor.model_dump()["mediaType"] == "x"


def test_docker_manifest_fields() -> None:
    manifest = parse_manifest(DOCKER_MANIFEST_RAW)
    assert isinstance(manifest, DockerManifest)
    assert manifest.media_type == media_types.DOCKER_MANIFEST
    assert manifest.config.media_type == media_types.DOCKER_CONFIG
    assert manifest.layers[1].media_type == media_types.DOCKER_FOREIGN_LAYER
    assert manifest.layers[1].urls == ("https://mcr.microsoft.com/v2/windows/blobs/x",)


def test_built_docker_manifest_and_list_name_their_media_types() -> None:
    config = Descriptor(media_type=media_types.DOCKER_CONFIG, digest=CONFIG_DIGEST, size=1)
    manifest = DockerManifest(config=config, layers=[])
    assert json.loads(manifest.to_bytes())["mediaType"] == media_types.DOCKER_MANIFEST
    listing = DockerManifestList(
        manifests=[
            manifest.descriptor(platform=Platform(architecture="amd64", os="linux")),
        ]
    )
    document = json.loads(listing.to_bytes())
    assert document["mediaType"] == media_types.DOCKER_MANIFEST_LIST
    assert document["manifests"][0]["mediaType"] == media_types.DOCKER_MANIFEST
    assert document["manifests"][0]["digest"] == str(manifest.digest)
    assert document["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}


# --- Platforms --------------------------------------------------------------------------


def test_manifests_for_a_platform() -> None:
    index = parse_manifest(OCI_INDEX_RAW)
    assert isinstance(index, OCIIndex)
    arm64 = index.manifests_for(Platform(architecture="arm64", os="linux"))
    assert [entry.digest for entry in arm64] == [Digest.parse(ARM64_DIGEST)]
    amd64 = index.manifests_for(Platform.parse("linux/amd64"))
    assert [entry.digest for entry in amd64] == [Digest.parse(AMD64_DIGEST)]
    assert index.manifests_for(Platform.parse("linux/s390x")) == []
    listing = parse_manifest(DOCKER_LIST_RAW)
    assert isinstance(listing, DockerManifestList)
    arm = listing.manifests_for(Platform.parse("linux/arm/v7"))
    assert [entry.digest for entry in arm] == [Digest.parse("sha256:" + "7" * 64)]


@pytest.mark.parametrize(
    ("want", "have", "matches"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "windows/amd64", False),
        ("linux/amd64", "linux/arm64", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),  # arm64 means v8 when unstated
        ("linux/arm64/v8", "linux/arm64/v8", True),
        ("linux/arm64/v9", "linux/arm64", False),
        ("linux/arm64/8", "linux/arm64/v8", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm/v7", "linux/arm", True),
        ("linux/arm/v6", "linux/arm", False),
        ("linux/arm", "linux/arm/v6", True),  # no variant asked for: any will do
        ("linux/x86_64", "linux/amd64", True),
        ("linux/aarch64", "linux/arm64/v8", True),
        ("linux/amd64/v1", "linux/amd64", True),
    ],
)
def test_platform_matches(want: str, have: str, matches: bool) -> None:
    assert platform_matches(Platform.parse(want), Platform.parse(have)) is matches


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", ("amd64", None)),
        ("AMD64", ("amd64", None)),
        ("aarch64", ("arm64", "v8")),
        ("arm64", ("arm64", "v8")),
        ("armv7l", ("arm", "v7")),
        ("armv6l", ("arm", "v6")),
        ("armv5tel", ("arm", "v5")),
        ("i686", ("386", None)),
        ("ppc64le", ("ppc64le", None)),
        ("s390x", ("s390x", None)),
        ("riscv64", ("riscv64", None)),
        ("loongarch64", ("loong64", None)),
        ("sparc64", ("sparc64", None)),
    ],
)
def test_normalize_architecture(machine: str, expected: tuple[str, str | None]) -> None:
    assert normalize_architecture(machine) == expected


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", "linux/amd64"), ("aarch64", "linux/arm64/v8"), ("armv7l", "linux/arm/v7")],
)
def test_host_linux(monkeypatch: pytest.MonkeyPatch, machine: str, expected: str) -> None:
    import platform

    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert str(Platform.host_linux()) == expected


def test_platform_parse_and_serialise() -> None:
    platform = Platform.parse("linux/arm64/v8")
    assert (platform.os, platform.architecture, platform.variant) == ("linux", "arm64", "v8")
    assert str(platform) == "linux/arm64/v8"
    assert platform.model_dump_json() == '{"architecture":"arm64","os":"linux","variant":"v8"}'
    windows = Platform(
        architecture="amd64", os="windows", os_version="10.0.17763", os_features=["win32k"]
    )
    assert json.loads(windows.model_dump_json()) == {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763",
        "os.features": ["win32k"],
    }
    for bad, problem in [
        ("linux", "is not `os/architecture[/variant]`"),
        ("linux/arm/v7/x", "is not `os/architecture[/variant]`"),
        ("linux/", "unknown architecture ''"),
        ("/amd64", "unknown os ''"),
        ("linux/amd65", "unknown architecture 'amd65'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(problem)):
            Platform.parse(bad)
    assert str(Platform.parse("linux/x86_64")) == "linux/amd64"
    assert str(Platform.parse("linux/aarch64/8")) == "linux/arm64/v8"


# --- Media types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "index", "manifest", "schema1"),
    [
        (media_types.OCI_INDEX, True, False, False),
        (media_types.DOCKER_MANIFEST_LIST, True, False, False),
        (media_types.OCI_MANIFEST, False, True, False),
        (media_types.DOCKER_MANIFEST, False, True, False),
        (media_types.DOCKER_MANIFEST_SCHEMA1, False, False, True),
        (media_types.DOCKER_MANIFEST_SCHEMA1_SIGNED, False, False, True),
        # Content-Type headers carry parameters and may differ in case.
        ("Application/VND.OCI.image.index.v1+json; charset=utf-8", True, False, False),
        (media_types.OCI_CONFIG, False, False, False),
        ("application/json", False, False, False),
        (None, False, False, False),
        ("", False, False, False),
    ],
)
def test_media_type_classification(
    media_type: str | None, index: bool, manifest: bool, schema1: bool
) -> None:
    assert media_types.is_index(media_type) is index
    assert media_types.is_manifest(media_type) is manifest
    assert media_types.is_schema1(media_type) is schema1


def test_layer_and_config_types() -> None:
    for layer in [
        media_types.OCI_LAYER,
        media_types.OCI_LAYER_GZIP,
        media_types.OCI_LAYER_ZSTD,
        media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        media_types.DOCKER_LAYER,
        media_types.DOCKER_FOREIGN_LAYER,
    ]:
        assert media_types.is_layer(layer) and not media_types.is_config(layer)
    assert media_types.is_config(media_types.DOCKER_CONFIG)
    assert media_types.is_config(media_types.OCI_CONFIG)
    assert media_types.DOCKER_LAYER == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert media_types.OCI_EMPTY_JSON == "application/vnd.oci.empty.v1+json"


def test_manifest_accept_header_lists_every_parseable_type_and_no_schema1() -> None:
    accepted = [part.strip() for part in media_types.MANIFEST_ACCEPT_HEADER.split(",")]
    assert set(accepted) == media_types.MANIFEST_TYPES | media_types.INDEX_TYPES
    # Indexes first, so a multi-platform tag resolves to its index.
    assert accepted[0] == media_types.OCI_INDEX
    assert not any(media_types.is_schema1(part) for part in accepted)
