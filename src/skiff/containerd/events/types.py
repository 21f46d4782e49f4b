"""The containerd.events messages skiff-containerd itself publishes (task
events come from the shims, already encoded). Codec messages from
skiff.ttrpc, numbered as containerd's api/events protos."""

from __future__ import annotations

from skiff.containerd.metadata.db import AnyValue
from skiff.ttrpc.protobuf import STRING, Field, Message


def _simple(name: str, topic: str, *fields: str) -> type[Message]:
    return type(
        name.rsplit(".", 1)[1],
        (Message,),
        {
            "NAME": name,
            "TOPIC": topic,
            "FIELDS": tuple(Field(i + 1, f, STRING) for i, f in enumerate(fields)),
        },
    )


NamespaceCreate = _simple("containerd.events.NamespaceCreate", "/namespaces/create", "name")
NamespaceDelete = _simple("containerd.events.NamespaceDelete", "/namespaces/delete", "name")
ImageCreate = _simple("containerd.services.images.v1.ImageCreate", "/images/create", "name")
ImageUpdate = _simple("containerd.services.images.v1.ImageUpdate", "/images/update", "name")
ImageDelete = _simple("containerd.services.images.v1.ImageDelete", "/images/delete", "name")
ContainerCreate = _simple("containerd.events.ContainerCreate", "/containers/create", "id", "image")
ContainerUpdate = _simple("containerd.events.ContainerUpdate", "/containers/update", "id", "image")
ContainerDelete = _simple("containerd.events.ContainerDelete", "/containers/delete", "id")
SnapshotPrepare = _simple("containerd.events.SnapshotPrepare", "/snapshot/prepare", "key", "parent")
SnapshotCommit = _simple("containerd.events.SnapshotCommit", "/snapshot/commit", "key", "name")
SnapshotRemove = _simple("containerd.events.SnapshotRemove", "/snapshot/remove", "key")
ContentDelete = _simple("containerd.events.ContentDelete", "/content/delete", "digest")


def pack(msg: Message) -> AnyValue:
    return AnyValue(msg.NAME, msg.encode())
