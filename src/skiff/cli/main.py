"""Entry point of `skiff`, the docker-compatible CLI.

Top of the layer diagram (DESIGN.md: skiff CLI -> skiff.client -> Engine API).
Global options are parsed here by hand and only the module of the noun at
hand is imported, so `skiff version` stays well under its 150 ms budget.
"""

from __future__ import annotations

import importlib
import os
import sys

# shortcut -> (noun module, verb)
CONTAINER_VERBS = (
    "run create start stop kill restart logs exec attach cp top stats wait rename "
    "pause unpause update port diff export commit"
)
SHORTCUTS: dict[str, tuple[str, str]] = {
    **{v: ("container", v) for v in CONTAINER_VERBS.split()},
    "rm": ("container", "rm"),
    "ps": ("container", "ls"),
    "inspect": ("system", "inspect"),
    "images": ("image", "ls"),
    "rmi": ("image", "rm"),
    **{v: ("image", v) for v in ["pull", "push", "tag", "save", "load", "import", "history"]},
    "info": ("system", "info"),
    "version": ("system", "version"),
    "events": ("system", "events"),
    "build": ("build", "build"),
    "login": ("login", "login"),
    "logout": ("login", "logout"),
}
NOUNS = {"container", "image", "volume", "network", "system", "context", "builder"}
MODULES = {"builder": "build"}

USAGE = """Usage:  skiff [OPTIONS] COMMAND

A docker-compatible client for skiffd (and any Docker Engine API daemon)

Common Commands:
  run         Create and run a new container from an image
  exec        Execute a command in a running container
  ps          List containers
  build       Build an image from a Dockerfile
  pull        Download an image from a registry
  push        Upload an image to a registry
  images      List images
  login       Log in to a registry
  logout      Log out from a registry
  version     Show the skiff version information
  info        Display system-wide information

Management Commands:
  builder     Manage builds
  container   Manage containers
  context     Manage contexts
  image       Manage images
  network     Manage networks
  system      Manage skiff
  volume      Manage volumes

Commands:
  attach  commit  cp  create  diff  events  export  history  import  inspect  kill
  load  logs  pause  port  rename  restart  rm  rmi  save  start  stats  stop  tag
  top  unpause  update  wait

Global Options:
      --config string      Location of client config files (default "~/.skiff", $SKIFF_CONFIG)
  -c, --context string     Name of the context to use ($DOCKER_CONTEXT)
  -H, --host string        Daemon socket to connect to ($DOCKER_HOST)
      --tls                Use TLS; implied by --tlsverify
      --tlscacert string   Trust certs signed only by this CA
      --tlscert string     Path to TLS certificate file
      --tlskey string      Path to TLS key file
      --tlsverify          Use TLS and verify the remote
  -v, --version            Print version information and quit
"""

VALUE_OPTS = {"--config", "-c", "--context", "-H", "--host", "-l", "--log-level",
              "--tlscacert", "--tlscert", "--tlskey"}  # fmt: skip


def split_globals(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    opts: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            break
        if a == "--":
            i += 1
            break
        name, eq, value = a.partition("=")
        if name in VALUE_OPTS:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(f"flag needs an argument: {name}")
                value = argv[i]
            opts.setdefault(name.lstrip("-"), []).append(value)
        elif name.startswith("-H") and len(name) > 2:
            opts.setdefault("host", []).append(a[2:])
        else:
            opts.setdefault(name.lstrip("-"), []).append("1")
        i += 1
    return opts, argv[i:]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, rest = split_globals(args)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 125
    if "v" in opts or "version" in opts:
        from skiff import __version__

        print(f"skiff version {__version__}")
        return 0
    if not rest or "h" in opts or "help" in opts or rest[0] == "help":
        print(USAGE)
        return 0
    cmd, cmd_args = rest[0], rest[1:]
    if cmd in NOUNS:
        noun = cmd
        if not cmd_args or cmd_args[0] in ("-h", "--help"):
            verb = "--help"
        else:
            verb, cmd_args = cmd_args[0], cmd_args[1:]
    elif cmd in SHORTCUTS:
        noun, verb = SHORTCUTS[cmd]
    else:
        print(f"skiff: '{cmd}' is not a skiff command.\nSee 'skiff --help'", file=sys.stderr)
        return 1

    from skiff.cli.common import Cli, StatusError
    from skiff.cli.config import ConfigError, config_dir
    from skiff.client import APIError, DaemonUnreachable, TLSConfig

    tls = None
    if "tls" in opts or "tlsverify" in opts or os.environ.get("DOCKER_TLS_VERIFY"):
        cert_path = os.environ.get("DOCKER_CERT_PATH", "")

        def tls_file(flag: str, name: str) -> str | None:
            if opts.get(flag):
                return opts[flag][-1]
            return os.path.join(cert_path, name) if cert_path else None

        tls = TLSConfig(
            ca=tls_file("tlscacert", "ca.pem"),
            cert=tls_file("tlscert", "cert.pem"),
            key=tls_file("tlskey", "key.pem"),
            verify="tlsverify" in opts or bool(os.environ.get("DOCKER_TLS_VERIFY")),
        )
    cli = Cli(
        config_dir(opts["config"][-1] if opts.get("config") else None),
        context=(opts.get("context") or opts.get("c") or [""])[-1] or None,
        hosts=opts.get("host", []) + opts.get("H", []),
        tls=tls,
    )
    module = importlib.import_module(f"skiff.cli.{MODULES.get(noun, noun)}")
    try:
        status: int = module.run(cli, verb, cmd_args)
        return status
    except StatusError as e:
        if e.message:
            cli.eprint(e.message)
        return e.status
    except DaemonUnreachable as e:
        cli.eprint(unreachable_message(e))
        return cli.daemon_error_status
    except APIError as e:
        cli.eprint(f"Error response from daemon: {e.message}")
        return cli.daemon_error_status
    except ConfigError as e:
        cli.eprint(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        try:
            cli.out.flush()
        except (BrokenPipeError, ValueError):
            pass
        if cli._client is not None:
            cli._client.close()


def unreachable_message(e: object) -> str:
    host = getattr(e, "host", "")
    reason = getattr(e, "reason", "")
    where = host.removeprefix("unix://") if host.startswith("unix://") else host
    return (
        f"Cannot connect to the skiff daemon at {host} ({reason}). Is skiffd running? "
        f"Start it with `skiffd -H {host}` (or `make run`), or point --host/DOCKER_HOST "
        f"or --context elsewhere"
        if where
        else f"Cannot connect to the skiff daemon: {reason}"
    )


if __name__ == "__main__":
    sys.exit(main())
