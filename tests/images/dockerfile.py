"""Reads the little of Dockerfile syntax the image tests need: global ARG
defaults, stages (FROM ... AS name) and each stage's instructions, with
continuation lines joined and comment lines dropped."""

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case: RUN, COPY, USER, ...
    text: str     # everything after the keyword, continuations joined
    line: int

    def exec_form(self):
        """ENTRYPOINT/CMD/RUN arguments in JSON form, or None for shell form."""
        return json.loads(self.text) if self.text.startswith("[") else None

    def flags_and_words(self):
        """Leading --flag=value options, and the remaining words."""
        words = shlex.split(self.text)
        flags = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags.setdefault(name, []).append(value)
        return flags, words


@dataclass
class Stage:
    base: str            # as written, ARGs not substituted
    name: str
    instructions: list = field(default_factory=list)

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]

    def user(self):
        users = self.all("USER")
        return users[-1].text if users else None

    def run_commands(self):
        """Each RUN's command, without its --mount options."""
        commands = []
        for run in self.all("RUN"):
            exec_form = run.exec_form()
            if exec_form is not None:
                commands.append(" ".join(exec_form))
            else:
                commands.append(re.sub(r"^(--\S+\s+)+", "", run.text))
        return commands

    def mounted_sources(self):
        """Build-context files bound into RUNs (--mount=type=bind,source=...)."""
        sources = []
        for run in self.all("RUN"):
            for option in re.findall(r"--mount=(\S+)", run.text):
                fields = dict(part.partition("=")[::2] for part in option.split(","))
                if fields.get("type") == "bind" and "from" not in fields:
                    sources.append(fields["source"])
        return sources


@dataclass
class Dockerfile:
    path: Path
    args: dict           # global ARGs (before the first FROM) and their defaults
    stages: list

    def stage(self, name):
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.path}: no stage {name!r}")

    def resolve(self, text):
        """Substitutes ${NAME} and $NAME with the global ARG defaults."""
        return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                      lambda m: self.args[m.group(1) or m.group(2)], text)


def _logical_lines(text):
    """(line number, text) of each instruction, continuations joined."""
    pending, start = [], None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments inside a continuation are dropped too
        if start is None:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(pending)
        pending, start = [], None
    if pending:
        raise ValueError(f"continuation at end of file (line {start})")


def parse(path):
    path = Path(path)
    args, stages = {}, []
    for number, line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--platform=")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=words[0], name=name))
            continue
        if keyword == "ARG" and not stages:
            # a default may use the ARGs before it, as Docker allows
            name, _, default = rest.partition("=")
            args[name] = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], default)
            continue
        if not stages:
            raise ValueError(f"{path}:{number}: {keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(keyword, rest, number))
    return Dockerfile(path=path, args=args, stages=stages)
