"""The builder over a real containerd: RUN in real containers, COPY/ADD
layers, metadata, multi-stage, the cache, reproducibility."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from build_daemons import RUNTIME
from build_helpers import Harness

from skiff.errors import SkiffError


@pytest.fixture
def h(moby: Any, tmp_path: Path) -> Harness:
    client, _ = moby
    return Harness(client, tmp_path, RUNTIME)


def test_run_copy_and_metadata(h: Harness) -> None:
    files = {
        "Dockerfile": (
            "FROM busybox\n"
            "ARG GREETING=hello\n"
            "ENV APP=/app NAME=world\n"
            "WORKDIR $APP\n"
            "COPY a.txt ./\n"
            "COPY --chmod=755 run.sh /usr/local/bin/\n"
            'RUN echo "$GREETING $NAME" > greeting && cat greeting\n'
            "USER 1000:1000\n"
            "EXPOSE 8080/tcp 53/udp\n"
            'LABEL org.example.v=1 "spaced key"="a b"\n'
            'ENTRYPOINT ["run.sh"]\n'
            'CMD ["--flag"]\n'
            "STOPSIGNAL SIGTERM\n"
            "VOLUME /data\n"
            "HEALTHCHECK --interval=5s CMD true\n"
        ),
        "a.txt": "file a\n",
        "run.sh": ("#!/bin/sh\necho run\n", 0o644),
    }
    result = h.build(files, tags=["example/app:1"], build_args={"GREETING": "hi"})
    assert "hi world" in h.stream
    assert "Step 1/15 : FROM busybox" in h.stream
    assert f"Successfully built {result.image_id[7:19]}" in h.stream
    assert result.tags == ["example/app:1"]
    cfg = h.config(result.image_id)
    c = cfg["config"]
    assert "APP=/app" in c["Env"] and "NAME=world" in c["Env"]
    assert c["WorkingDir"] == "/app"
    assert c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert c["Labels"] == {"org.example.v": "1", "spaced key": "a b"}
    assert c["Entrypoint"] == ["run.sh"] and c["Cmd"] == ["--flag"]
    assert c["Volumes"] == {"/data": {}}
    assert c["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert c["Healthcheck"]["Interval"] == 5_000_000_000
    # history: every step, with empty_layer on metadata
    created = [x["created_by"] for x in cfg["history"]][-13:]
    assert any("COPY file:" in x and "in ./" not in x for x in created)
    assert any(x.startswith("|1 GREETING=hi /bin/sh -c echo") for x in created)
    record = h.client.get_image("docker.io/example/app:1")
    assert record.target.media_type.endswith("manifest.v2+json")


def test_run_failure_reports_code(h: Harness) -> None:
    with pytest.raises(
        SkiffError, match=r"The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    ):
        h.build({"Dockerfile": "FROM busybox\nRUN exit 3\n"})


def test_cache_reuse_and_invalidation(h: Harness) -> None:
    df = "FROM busybox\nCOPY a /a\nRUN cat /a > /b\nCOPY c /c\nRUN ls /\n"
    first = h.build({"Dockerfile": df, "a": "1", "c": "c"})
    assert "Using cache" not in h.stream
    second = h.build({"Dockerfile": df, "a": "1", "c": "c"})
    assert h.stream.count("Using cache") == 4
    assert second.image_id == first.image_id
    third = h.build({"Dockerfile": df, "a": "1", "c": "changed"})
    assert h.stream.count("Using cache") == 2
    assert third.image_id != first.image_id
    nocache = h.build({"Dockerfile": df, "a": "1", "c": "c"}, no_cache=True)
    assert "Using cache" not in h.stream
    assert nocache.image_id != first.image_id


def test_cache_survives_restart(h: Harness, moby: Any) -> None:
    df = "FROM busybox\nRUN echo once > /x\n"
    h.build({"Dockerfile": df})
    again = Harness(moby[0], h.root, RUNTIME)  # a new builder over the same data root
    again.build({"Dockerfile": df})
    assert again.stream.count("Using cache") == 1


def test_multistage_target_and_skipping(h: Harness) -> None:
    df = (
        "FROM busybox AS base\nRUN echo base > /base\n"
        "FROM busybox AS unused\nRUN exit 1\n"
        "FROM scratch AS final\nCOPY --from=base /base /copied\n"
        "FROM base AS other\nRUN cat /base\n"
    )
    result = h.build({"Dockerfile": df}, target="final")
    cfg = h.config(result.image_id)
    assert len(cfg["rootfs"]["diff_ids"]) == 1
    assert "exit 1" not in h.stream
    with pytest.raises(SkiffError, match="failed to reach build target nope in Dockerfile"):
        h.build({"Dockerfile": df}, target="nope")


def test_reproducible_with_source_date_epoch(moby: Any, tmp_path: Path) -> None:
    df = "FROM busybox\nCOPY a /a\nRUN echo $RANDOM > /dev/null; touch /made\nENV X=1\n"
    ids = []
    for n in range(2):
        h = Harness(moby[0], tmp_path / f"root{n}", RUNTIME)
        ids.append(
            h.build(
                {"Dockerfile": df, "a": "x"},
                build_args={"SOURCE_DATE_EPOCH": "1700000000"},
                no_cache=True,
            ).image_id
        )
    assert ids[0] == ids[1]
