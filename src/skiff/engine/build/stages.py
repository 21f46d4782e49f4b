"""Multi-stage planning: split the parsed Dockerfile into stages, pick the
target (`--target`, else the last stage) and keep only the stages it needs
(through `FROM <stage>` and `COPY --from=<stage>`), in file order.
Sits between the parser (dockerfile) and the executor (builder).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from skiff.engine.build.dockerfile import Dockerfile, Instruction, ParseError
from skiff.engine.build.shell import ShellLex
from skiff.errors import InvalidArgument

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


@dataclass(slots=True)
class Stage:
    index: int
    name: str  # lower case; "" when unnamed
    base: str  # the FROM image, ARGs before FROM substituted
    platform: str  # --platform, substituted ("" when not given)
    source: Instruction
    commands: list[Instruction] = field(default_factory=list)
    base_stage: int | None = None  # when FROM names an earlier stage


@dataclass(slots=True)
class Plan:
    meta_args: list[Instruction]
    stages: list[Stage]
    target: int
    order: list[int]  # the stages to build, in file order

    @property
    def steps(self) -> int:
        """How many `Step i/N` lines the build prints."""
        return sum(1 + len(self.stages[i].commands) for i in self.order)


def meta_env(
    meta_args: list[Instruction], build_args: Mapping[str, str], lex: ShellLex
) -> dict[str, str]:
    """The values of the ARGs declared before the first FROM."""
    env: dict[str, str] = {}
    for inst in meta_args:
        for word in inst.args:
            name, eq, default = word.partition("=")
            if name in build_args:
                env[name] = build_args[name]
            elif eq:
                env[name] = lex.process_word(default, env)
    return env


def plan(
    df: Dockerfile,
    *,
    target: str = "",
    build_args: Mapping[str, str] | None = None,
    predefined: Mapping[str, str] | None = None,
    dockerfile_name: str = "Dockerfile",
) -> Plan:
    if not df.instructions:
        raise InvalidArgument(f"the Dockerfile ({dockerfile_name}) cannot be empty")
    lex = ShellLex(df.escape)
    meta: list[Instruction] = []
    stages: list[Stage] = []
    names: dict[str, int] = {}
    env: dict[str, str] = dict(predefined or {})
    args = dict(build_args or {})
    for inst in df.instructions:
        if inst.cmd == "from":
            if not stages:
                env.update(meta_env(meta, args, lex))
            base = lex.process_word(inst.args[0], env)
            if not base:
                raise ParseError(inst.line, "base name (" + inst.args[0] + ") should not be blank")
            platform = lex.process_word(inst.flag("platform") or "", env)
            name = ""
            if len(inst.args) == 3:
                name = inst.args[2].lower()
                if not _STAGE_NAME.match(name):
                    raise ParseError(
                        inst.line,
                        f"invalid name for build stage: {inst.args[2]!r}, "
                        "name can't start with a number or contain symbols",
                    )
                if name in names:
                    raise ParseError(inst.line, f"duplicate stage name {name!r}")
            stage = Stage(len(stages), name, base, platform, inst)
            if base.lower() in names:
                stage.base_stage = names[base.lower()]
            if name:
                names[name] = stage.index
            stages.append(stage)
        elif not stages:
            if inst.cmd != "arg":
                raise ParseError(inst.line, "no build stage in current context")
            meta.append(inst)
        else:
            stages[-1].commands.append(inst)
    if not stages:
        raise InvalidArgument("no build stage in current context")
    if target:
        idx = names.get(target.lower())
        if idx is None:
            raise InvalidArgument(f"failed to reach build target {target} in Dockerfile")
    else:
        idx = len(stages) - 1
    needed = _needed(stages, names, idx, lex, env)
    return Plan(meta, stages, idx, sorted(needed))


def stage_ref(
    value: str, stages: list[Stage], names: Mapping[str, int], current: int
) -> int | None:
    """The stage a `--from` value names (by name or index), or None for an image."""
    key = value.lower()
    if key in names:
        idx = names[key]
    elif value.isdigit():
        idx = int(value)
        if idx >= len(stages):
            raise InvalidArgument(f"invalid from flag value {value}: stage index out of range")
    else:
        return None
    if idx >= current:
        raise InvalidArgument(
            f"circular dependency detected on stage: {stages[current].name or current}"
        )
    return idx


def _needed(
    stages: list[Stage],
    names: Mapping[str, int],
    target: int,
    lex: ShellLex,
    env: Mapping[str, str],
) -> set[int]:
    needed: set[int] = set()
    todo = [target]
    while todo:
        i = todo.pop()
        if i in needed:
            continue
        needed.add(i)
        stage = stages[i]
        if stage.base_stage is not None:
            todo.append(stage.base_stage)
        for inst in stage.commands:
            source = inst.trigger if inst.cmd == "onbuild" else inst
            if inst.cmd == "onbuild" or source is None or source.cmd != "copy":
                continue
            value = source.flag("from")
            if value:
                ref = stage_ref(lex.process_word(value, env), stages, names, i)
                if ref is not None:
                    todo.append(ref)
    return needed


def names_of(stages: list[Stage]) -> dict[str, int]:
    return {s.name: s.index for s in stages if s.name}
