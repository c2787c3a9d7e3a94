"""Search spaces: the YAML file format, its decisions, and `SearchSpace`, which samples `Arch`es with Optuna.

The package, bottom to top:

- `nas.space.decision`: one decision (choices or a range, its scope and default), a stage's
  decisions (`StageSpace`), the block keys and `SpaceError`;
- `nas.space.file`: the YAML file read and checked key by key into the space's fields;
- `nas.space.space`: `SearchSpace` (sample, build, encode, count, reference points) and `load_space`;
- `nas.space.cli`: `python -m nas.space FILE` describes a space (`describe`, `main`).

    >>> space = load_space('search_spaces/digits.yaml')
    >>> space.size
    220
"""

from nas.space.cli import describe, main
from nas.space.decision import BLOCK_DECISIONS, Decision, SpaceError, StageSpace
from nas.space.space import SearchSpace, load_space

__all__ = ["SpaceError", "Decision", "StageSpace", "SearchSpace", "load_space", "BLOCK_DECISIONS", "describe", "main"]
