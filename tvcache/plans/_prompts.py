"""Prompts are files in ``tvcache/plans/prompts``, named ``<name>.v<N>.txt``: changing a prompt
means adding a version, so stored templates can say which prompt made them and old runs stay
comparable. A file holds a ``## system`` and a ``## user`` part with ``{field}`` slots."""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from importlib import resources

from snapshots import TvcacheError

#: The version of each prompt the plan cache uses now.
CURRENT = {"keyword": 1, "template": 1, "adapt": 1, "plan": 1, "act": 1}


class PromptError(TvcacheError, KeyError):
    """A prompt file that is missing, malformed, or filled with the wrong fields."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    system: str
    user: str

    @property
    def label(self) -> str:
        return f"{self.name}.v{self.version}"

    def render(self, **fields: str) -> tuple[str, str]:
        """(system, user) with the slots filled; every slot must be given, and nothing else."""
        wanted = _slots(self.system) | _slots(self.user)
        if set(fields) != wanted:
            raise PromptError(
                f"prompt {self.label} takes the fields {sorted(wanted)}, got {sorted(fields)}",
                "pass exactly the fields the prompt file names in braces",
            )
        return self.system.format(**fields), self.user.format(**fields)


def _slots(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


_PART = re.compile(r"^## (system|user)\n", re.MULTILINE)


@functools.cache
def prompt(name: str, version: int | None = None) -> Prompt:
    """The prompt ``name`` at ``version`` (default: the current one)."""
    version = CURRENT.get(name, 0) if version is None else version
    resource = resources.files("tvcache.plans").joinpath("prompts", f"{name}.v{version}.txt")
    try:
        text = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as error:
        raise PromptError(
            f"no prompt file {name}.v{version}.txt",
            f"prompts are {', '.join(f'{n}.v{v}' for n, v in sorted(CURRENT.items()))}",
        ) from error
    parts = _PART.split(text)
    found = dict(zip(parts[1::2], parts[2::2], strict=True))
    if set(found) != {"system", "user"}:
        raise PromptError(
            f"prompt file {name}.v{version}.txt needs a '## system' and a '## user' part",
            "fix the file",
        )
    return Prompt(name, version, found["system"].strip(), found["user"].strip())
