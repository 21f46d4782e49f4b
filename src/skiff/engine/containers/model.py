"""A Docker container as skiffd keeps it: the record on disk and its state machine.

`config.v2.json` (everything `docker inspect` shows but HostConfig) and
`hostconfig.json` in `<data-root>/containers/<id>/`, written atomically.
States and allowed transitions follow Docker's: created, running, paused,
restarting, exited, removing, dead.
"""

from __future__ import annotations

import enum
import json
import os
import random
import re
import time
from typing import Any

from skiff.engine.containers.logs import rfc3339
from skiff.errors import Conflict, InvalidArgument

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Status(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


ALLOWED: dict[Status, set[Status]] = {
    Status.CREATED: {Status.RUNNING, Status.REMOVING, Status.EXITED, Status.DEAD},
    Status.RUNNING: {Status.PAUSED, Status.EXITED, Status.RESTARTING, Status.RUNNING, Status.DEAD},
    Status.PAUSED: {Status.RUNNING, Status.EXITED, Status.DEAD},
    Status.RESTARTING: {Status.RUNNING, Status.EXITED, Status.REMOVING, Status.DEAD},
    Status.EXITED: {Status.RUNNING, Status.RESTARTING, Status.REMOVING, Status.DEAD},
    Status.REMOVING: {Status.DEAD, Status.EXITED},
    Status.DEAD: {Status.REMOVING},
}


def write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Container:
    """One container's record; `data` has the shape of `docker inspect` (less HostConfig)."""

    def __init__(self, data: dict[str, Any], host: dict[str, Any], directory: str):
        self.data = data
        self.host = host
        self.dir = directory
        self.manually_stopped = bool(data.get("HasBeenManuallyStopped"))
        # what hostconfig.json holds, so a save that changed only the state skips its fsync
        self._host_written: bytes | None = None

    # -- identity -----------------------------------------------------------

    @property
    def id(self) -> str:
        return str(self.data["ID"])

    @property
    def name(self) -> str:
        return str(self.data["Name"])

    @property
    def config(self) -> dict[str, Any]:
        return self.data["Config"]  # type: ignore[no-any-return]

    @property
    def state(self) -> dict[str, Any]:
        return self.data["State"]  # type: ignore[no-any-return]

    @property
    def status(self) -> Status:
        return Status(self.state["Status"])

    @property
    def running(self) -> bool:
        return self.status in (Status.RUNNING, Status.PAUSED)

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, f"{self.id}-json.log")

    # -- state --------------------------------------------------------------

    def transition(self, to: Status) -> None:
        if to not in ALLOWED[self.status]:
            raise Conflict(f"cannot go from {self.status} to {to}")
        st = self.state
        st["Status"] = str(to)
        st["Running"] = to in (Status.RUNNING, Status.PAUSED)
        st["Paused"] = to == Status.PAUSED
        st["Restarting"] = to == Status.RESTARTING
        st["Dead"] = to == Status.DEAD

    def set_running(self, pid: int) -> None:
        self.transition(Status.RUNNING)
        st = self.state
        st.update(Pid=pid, ExitCode=0, Error="", OOMKilled=False, StartedAt=rfc3339(time.time()))
        self.manually_stopped = False

    def set_exited(self, code: int, at: float) -> None:
        self.transition(Status.EXITED)
        st = self.state
        st.update(Pid=0, ExitCode=code, FinishedAt=rfc3339(at or time.time()))
        if st.get("Health"):
            st["Health"]["Status"] = "unhealthy"  # a stopped container is never healthy

    # -- disk ---------------------------------------------------------------

    def save(self) -> None:
        self.data["HasBeenManuallyStopped"] = self.manually_stopped
        write_atomic(os.path.join(self.dir, "config.v2.json"), json.dumps(self.data).encode())
        host = json.dumps(self.host).encode()
        if host != self._host_written:
            write_atomic(os.path.join(self.dir, "hostconfig.json"), host)
            self._host_written = host

    @classmethod
    def load(cls, directory: str) -> Container:
        with open(os.path.join(directory, "config.v2.json")) as f:
            data = json.load(f)
        try:
            with open(os.path.join(directory, "hostconfig.json")) as f:
                host = json.load(f)
        except FileNotFoundError:
            host = {}
        c = cls(data, host, directory)
        c._host_written = json.dumps(host).encode() if host else None
        return c


def new_state() -> dict[str, Any]:
    return {
        "Status": "created",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": "0001-01-01T00:00:00Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
    }


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return "/" + name.lstrip("/")


_LEFT = [
    "admiring",
    "adoring",
    "affectionate",
    "amazing",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "confident",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
]
_RIGHT = [
    "agnesi",
    "albattani",
    "allen",
    "almeida",
    "archimedes",
    "ardinghelli",
    "aryabhata",
    "austin",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bassi",
    "beaver",
    "bell",
    "benz",
    "bhabha",
    "bhaskara",
    "black",
    "blackburn",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "bouman",
    "boyd",
    "brahmagupta",
    "brattain",
    "brown",
    "buck",
    "burnell",
    "cannon",
    "carson",
    "cartwright",
    "carver",
    "cerf",
    "chandrasekhar",
    "chaplygin",
    "chatelet",
    "chatterjee",
    "chaum",
    "chebyshev",
    "clarke",
    "cohen",
    "colden",
    "cori",
    "cray",
    "curie",
    "darwin",
    "davinci",
    "dewdney",
    "dhawan",
    "diffie",
    "dijkstra",
    "dirac",
    "driscoll",
    "dubinsky",
    "easley",
    "edison",
    "einstein",
    "elbakyan",
    "elgamal",
    "elion",
    "ellis",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "feistel",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "gagarin",
    "galileo",
    "galois",
    "ganguly",
    "gates",
    "gauss",
    "germain",
    "goldberg",
    "goldstine",
    "goldwasser",
    "golick",
    "goodall",
    "gould",
    "greider",
    "grothendieck",
    "haibt",
    "hamilton",
    "haslett",
    "hawking",
    "heisenberg",
    "hellman",
    "hermann",
    "herschel",
    "hertz",
    "heyrovsky",
    "hodgkin",
    "hofstadter",
    "hoover",
    "hopper",
    "hugle",
    "hypatia",
    "ishizaka",
    "jackson",
    "jang",
    "jemison",
    "jennings",
    "jepsen",
    "johnson",
    "joliot",
    "jones",
    "kalam",
    "kapitsa",
    "kare",
    "keldysh",
    "keller",
    "kepler",
    "khayyam",
    "khorana",
    "kilby",
    "kirch",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lederberg",
    "lehmann",
    "lewin",
    "lichterman",
    "liskov",
    "lovelace",
    "lumiere",
    "mahavira",
    "margulis",
    "matsumoto",
    "maxwell",
    "mayer",
    "mccarthy",
    "mcclintock",
    "mclaren",
    "mclean",
    "mcnulty",
    "meitner",
    "mendel",
    "mendeleev",
    "meninsky",
    "merkle",
    "mestorf",
    "mirzakhani",
    "montalcini",
    "moore",
    "morse",
    "moser",
    "murdock",
    "napier",
    "nash",
    "neumann",
    "newton",
    "nightingale",
    "nobel",
    "noether",
    "northcutt",
    "noyce",
    "panini",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "poitras",
    "proskuriakova",
    "ptolemy",
    "raman",
    "ramanujan",
    "rhodes",
    "ride",
    "ritchie",
    "robinson",
    "roentgen",
    "rosalind",
    "rubin",
    "saha",
    "sammet",
    "sanderson",
    "satoshi",
    "shamir",
    "shannon",
    "shaw",
    "shirley",
    "shockley",
    "shtern",
    "sinoussi",
    "snyder",
    "solomon",
    "spence",
    "stonebraker",
    "sutherland",
    "swanson",
    "swartz",
    "swirles",
    "taussig",
    "tesla",
    "tharp",
    "thompson",
    "torvalds",
    "tu",
    "turing",
    "varahamihira",
    "vaughan",
    "villani",
    "visvesvaraya",
    "volhard",
    "wescoff",
    "wilbur",
    "wiles",
    "williams",
    "williamson",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "wu",
    "yalow",
    "yonath",
    "zhukovsky",
]


def random_name(taken: set[str]) -> str:
    for attempt in range(100):
        name = f"/{random.choice(_LEFT)}_{random.choice(_RIGHT)}"
        if attempt > 10:
            name += str(random.randint(0, 9))
        if name not in taken:
            return name
    return f"/{random.choice(_LEFT)}_{random.choice(_RIGHT)}{random.randint(10, 99999)}"
