"""`skiff login` / `skiff logout`: registry credentials in config.json's
"auths", in the docker CLI's layout (base64 "user:password" under "auth").

Part of the CLI (DESIGN.md: skiff CLI -> Engine API /auth; the daemon uses
the credentials the CLI sends in X-Registry-Auth for pull and push).
"""

from __future__ import annotations

import base64
import getpass
import sys
from collections.abc import Callable
from typing import Any

from skiff.cli.common import Cli, StatusError, UsageError, parser

HUB = "https://index.docker.io/v1/"

Command = Callable[[Cli, list[str]], int]


def server_key(server: str | None) -> str:
    """The key of a registry in "auths": Docker Hub's legacy URL, else host[:port]."""
    if not server or server in ("docker.io", "index.docker.io", "registry-1.docker.io", HUB):
        return HUB
    return server.removeprefix("https://").removeprefix("http://").rstrip("/")


def credentials(cli: Cli, registry: str) -> dict[str, Any] | None:
    key = server_key(registry)
    auths = cli.config.data.get("auths") or {}
    entry = auths.get(key) or auths.get(f"https://{key}") or auths.get(f"http://{key}")
    if not entry:
        return None
    out: dict[str, Any] = {"serveraddress": key}
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        out.update(username=user, password=password)
    if entry.get("identitytoken"):
        out["identitytoken"] = entry["identitytoken"]
    return out


def all_credentials(cli: Cli) -> dict[str, Any]:
    """Every stored login, keyed by registry, for X-Registry-Config (build's FROM pulls)."""
    out: dict[str, Any] = {}
    for key in cli.config.data.get("auths") or {}:
        cred = credentials(cli, key)
        if cred:
            out[key] = cred
    return out


def cmd_login(cli: Cli, argv: list[str]) -> int:
    p = parser("login", usage="skiff login [OPTIONS] [SERVER]")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?")
    o = p.parse_args(argv)
    password = o.password
    if o.password_stdin:
        if o.password:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        if not o.username:
            raise UsageError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif o.password:
        cli.eprint("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    key = server_key(o.server)
    username = o.username
    if not username:
        cli.out.write("Username: ")
        cli.out.flush()
        username = sys.stdin.readline().strip()
    if not password:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise StatusError(1, "Error: Cannot perform an interactive login from a non TTY device")
    result = cli.client.auth({"username": username, "password": password, "serveraddress": key})
    entry: dict[str, Any] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    if result.get("IdentityToken"):
        entry = {"auth": "", "identitytoken": result["IdentityToken"]}
    cli.config.data.setdefault("auths", {})[key] = entry
    cli.config.save()
    cli.print(result.get("Status") or "Login Succeeded")
    return 0


def cmd_logout(cli: Cli, argv: list[str]) -> int:
    p = parser("logout", usage="skiff logout [SERVER]")
    p.add_argument("server", nargs="?")
    o = p.parse_args(argv)
    key = server_key(o.server)
    auths = cli.config.data.get("auths") or {}
    found = [k for k in (key, f"https://{key}", f"http://{key}") if k in auths]
    if not found:
        cli.print(f"Not logged in to {key}")
        return 0
    cli.print(f"Removing login credentials for {key}")
    for k in found:
        del auths[k]
    cli.config.save()
    return 0


VERBS: dict[str, Command] = {"login": cmd_login, "logout": cmd_logout}


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    return VERBS[verb](cli, argv)
