"""The Dockerfile parser: syntax, forms and Docker's error wording."""

from __future__ import annotations

import pytest

from skiff.engine.build.dockerfile import ParseError, parse


def one(text: str):  # type: ignore[no-untyped-def]
    df = parse(text)
    assert len(df.instructions) == 1, df.instructions
    return df.instructions[0]


def test_instructions_case_insensitive_and_lines() -> None:
    df = parse("from busybox\n\n# comment\nRun echo hi\n")
    assert [(i.cmd, i.line) for i in df.instructions] == [("from", 1), ("run", 4)]
    assert df.instructions[1].args == ("echo hi",)


def test_unknown_instruction_wording() -> None:
    with pytest.raises(ParseError) as e:
        parse("FROM busybox\nRUN true\nFOO bar\n")
    assert str(e.value) == "dockerfile parse error on line 3: unknown instruction: FOO"
    assert e.value.http_status == 400


def test_unknown_instruction_lowercase_reported_upper() -> None:
    with pytest.raises(ParseError, match="line 1: unknown instruction: FROMM"):
        parse("fromm busybox\n")


def test_continuations_comments_and_empty_lines() -> None:
    df = parse("FROM busybox\nRUN echo a \\\n  # a comment inside\n\n  && echo b\nCMD x\n")
    run = df.instructions[1]
    assert run.line == 2
    assert run.args == ("echo a   && echo b",)
    assert df.instructions[2].line == 6
    assert any("empty continuation line" in w for w in df.warnings)


def test_continuation_with_trailing_spaces_after_escape() -> None:
    run = parse("RUN echo a \\  \n b\n").instructions[0]
    assert run.args == ("echo a  b",)


def test_escape_directive_backtick() -> None:
    df = parse("# escape=`\nFROM busybox\nRUN echo a `\n b\nCOPY a\\b c\\\n")
    assert df.escape == "`"
    assert df.instructions[1].args == ("echo a  b",)
    assert df.instructions[2].args == ("a\\b", "c\\")


def test_syntax_directive_accepted() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=\\\nFROM busybox\n")
    assert df.syntax == "docker/dockerfile:1"
    assert df.instructions[0].cmd == "from"


def test_directive_after_comment_is_a_comment() -> None:
    df = parse("# hello\n# escape=`\nFROM busybox\nRUN a \\\n b\n")
    assert df.escape == "\\"
    assert df.instructions[1].args == ("a  b",)


def test_duplicate_directive() -> None:
    with pytest.raises(ParseError, match="line 2: only one escape parser directive can be used"):
        parse("# escape=\\\n# escape=`\nFROM x\n")


def test_invalid_escape() -> None:
    with pytest.raises(ParseError, match="invalid escape token"):
        parse("# escape=x\nFROM x\n")


def test_from_forms() -> None:
    df = parse("ARG V=1\nFROM --platform=linux/amd64 busybox:${V} AS Build\nFROM scratch\n")
    f = df.instructions[1]
    assert f.flag("platform") == "linux/amd64"
    assert f.args == ("busybox:${V}", "AS", "Build")
    with pytest.raises(ParseError, match="FROM requires either one or three arguments"):
        parse("FROM a b\n")
    with pytest.raises(ParseError, match="Unknown flag: foo"):
        parse("FROM --foo=bar a\n")


def test_run_forms() -> None:
    assert one('RUN ["echo", "a b"]').args == ("echo", "a b")
    assert one('RUN ["echo", "a b"]').json
    shell = one("RUN [not json")
    assert not shell.json and shell.args == ("[not json",)
    assert one("RUN --network=none true").flag("network") == "none"
    with pytest.raises(ParseError, match="line 1: RUN requires at least one argument"):
        parse("RUN\n")


def test_cmd_entrypoint_shell() -> None:
    assert one('CMD ["a"]').json
    assert one("ENTRYPOINT exec me").args == ("exec me",)
    assert one('SHELL ["/bin/sh", "-xc"]').args == ("/bin/sh", "-xc")
    with pytest.raises(ParseError, match="SHELL requires the arguments to be in JSON form"):
        parse("SHELL /bin/bash -c\n")


def test_env_both_forms() -> None:
    assert one('ENV A=1 B="two words" C=a\\ b').args == ("A", "1", "B", '"two words"', "C", "a\\ b")
    assert one("ENV A hello world  ").args == ("A", "hello world")
    with pytest.raises(ParseError, match="ENV must have two arguments"):
        parse("ENV A\n")
    with pytest.raises(ParseError, match="can't find = in 'B'"):
        parse("ENV A=1 B\n")
    with pytest.raises(ParseError, match="ENV requires at least one argument"):
        parse("ENV\n")


def test_label_arg_expose_volume() -> None:
    assert one('LABEL "a.b"="c d" e=f').args == ('"a.b"', '"c d"', "e", "f")
    assert one("ARG A B=2").args == ("A", "B=2")
    assert one("EXPOSE 80 443/udp").args == ("80", "443/udp")
    assert one('VOLUME ["/a", "/b"]').args == ("/a", "/b")
    assert one("VOLUME /a /b").args == ("/a", "/b")


def test_copy_add_forms() -> None:
    c = one("COPY --from=build --chown=1:2 --chmod=755 --link a b /dst/")
    assert c.flag("from") == "build" and c.flag("chown") == "1:2" and c.flag("chmod") == "755"
    assert c.flag("link") == "true"
    assert c.args == ("a", "b", "/dst/")
    assert one('COPY ["a b", "/c d/"]').args == ("a b", "/c d/")
    with pytest.raises(ParseError) as e:
        parse("FROM x\nCOPY onlyone\n")
    assert str(e.value) == (
        "dockerfile parse error on line 2: COPY requires at least two arguments, but only one "
        "was provided. Destination could not be determined."
    )
    with pytest.raises(ParseError, match="Unknown flag: from"):
        parse("ADD --from=x a b\n")


def test_single_argument_instructions() -> None:
    assert one("WORKDIR /a b").args == ("/a b",)
    assert one("USER 1000:1000").args == ("1000:1000",)
    assert one("STOPSIGNAL SIGKILL").args == ("SIGKILL",)
    with pytest.raises(ParseError, match="USER requires exactly one argument"):
        parse("USER a b\n")
    with pytest.raises(ParseError, match="WORKDIR requires exactly one argument"):
        parse("WORKDIR\n")


def test_healthcheck() -> None:
    h = one('HEALTHCHECK --interval=5s --retries=3 CMD ["true"]')
    assert h.args == ("CMD", "true") and h.json
    assert h.flag("interval") == "5s" and h.flag("retries") == "3"
    assert one("HEALTHCHECK CMD wget -q localhost").args == ("CMD", "wget -q localhost")
    assert one("HEALTHCHECK NONE").args == ("NONE",)
    with pytest.raises(ParseError, match='Unknown type "FOO" in HEALTHCHECK'):
        parse("HEALTHCHECK FOO x\n")


def test_onbuild() -> None:
    o = one("ONBUILD RUN echo hi")
    assert o.trigger is not None and o.trigger.cmd == "run" and o.trigger.args == ("echo hi",)
    assert o.args == ("RUN echo hi",)
    with pytest.raises(ParseError, match="Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"):
        parse("ONBUILD ONBUILD RUN x\n")
    with pytest.raises(ParseError, match="FROM isn't allowed as an ONBUILD trigger"):
        parse("ONBUILD FROM x\n")


def test_heredocs() -> None:
    df = parse(
        "FROM busybox\n"
        "RUN <<EOF\n"
        "echo one\n"
        "echo two\n"
        "EOF\n"
        "COPY <<-'END' /greeting\n"
        "\thello $NAME\n"
        "\tEND\n"
        "RUN cat <<A && cat <<B\n"
        "a\n"
        "A\n"
        "b\n"
        "B\n"
        "CMD done\n"
    )
    cmds = [i.cmd for i in df.instructions]
    assert cmds == ["from", "run", "copy", "run", "cmd"]
    run = df.instructions[1]
    assert run.heredocs[0].name == "EOF" and run.heredocs[0].content == "echo one\necho two\n"
    copy = df.instructions[2]
    assert copy.heredocs[0].content == "hello $NAME\n"
    assert not copy.heredocs[0].expand and copy.heredocs[0].chomp
    assert copy.args == ("<<-'END'", "/greeting")
    assert [h.content for h in df.instructions[3].heredocs] == ["a\n", "b\n"]
    assert df.instructions[4].line == 14


def test_heredoc_unterminated() -> None:
    with pytest.raises(ParseError, match="line 2: unterminated heredoc EOF"):
        parse("FROM x\nRUN <<EOF\necho\n")


def test_here_string_is_not_heredoc() -> None:
    run = one("RUN cat <<<word")
    assert run.heredocs == ()


def test_crlf_and_bom() -> None:
    df = parse("\ufeffFROM busybox\r\nRUN echo \\\r\n hi\r\n")
    assert df.instructions[1].args == ("echo  hi",)


def test_maintainer() -> None:
    assert one("MAINTAINER Jane <j@example.com>").args == ("Jane <j@example.com>",)
