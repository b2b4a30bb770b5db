"""Alignments drawn on the job page: a Clustal or aligned FASTA output read into rows of
residues, with a conservation and a consensus track.

Parsing is bounded (at most ``MAX_BYTES`` read, ``MAX_CELLS`` residues drawn) and only
ever produces text that the page's template escapes: a job's output is never HTML. Each
row is cut into runs of residues of one colour class, so the page has one element per run,
not per residue. The classes follow residue properties (hydrophobic, charged, polar, ...;
for nucleic acids one per base); the letters themselves and the conservation track carry
the same information without colour.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

MAX_BYTES = 2 * 1024 * 1024
MAX_CELLS = 400_000  # sequences x columns drawn; more: the text preview only
GAPS = frozenset("-.")

# Residue classes (a letter: its class; the page's stylesheet colours each class).
PROTEIN_CLASSES = {
    **dict.fromkeys("AILMFWV", "hyd"),  # hydrophobic
    **dict.fromkeys("KR", "pos"),  # positive
    **dict.fromkeys("DE", "neg"),  # negative
    **dict.fromkeys("NQST", "pol"),  # polar
    **dict.fromkeys("HY", "aro"),  # aromatic, polar
    "C": "cys", "G": "gly", "P": "pro",
}  # fmt: skip
NUCLEIC_CLASSES = {"A": "na", "C": "nc", "G": "ng", "T": "nt", "U": "nt"}
NUCLEIC = frozenset("ACGTUN")
# Clustal's groups: ':' where a column's residues all fall in one strong group, '.' in
# one weak group ('*' where they are identical).
STRONG = ("STA", "NEQK", "NHQK", "NDEQ", "QHRK", "MILV", "MILF", "HY", "FYW")
WEAK = ("CSA", "ATV", "SAG", "STNK", "STPA", "SGND", "SNDEQK", "NDEQHK", "NEQHRK",
        "FVLIM", "HFY")  # fmt: skip


class NotAnAlignment(ValueError):
    """The text is not an alignment this module draws (a reason, for the page's note)."""


class Unaligned(NotAnAlignment):
    """Sequences, not an alignment (a FASTA output of another kind): nothing to say."""


@dataclass(frozen=True)
class Run:
    cls: str  # colour class ("" for gaps and unknown letters)
    text: str


@dataclass(frozen=True)
class Row:
    name: str
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class AlignmentView:
    rows: tuple[Row, ...]
    conservation: str  # one character per column: '*', ':', '.' or ' '
    consensus: str  # the most common residue where at least half the rows have it, else '·'
    columns: int
    nucleic: bool

    @property
    def ruler(self) -> str:
        """Column numbers every 10 columns, aligned over the residues."""
        marks = []
        for start in range(0, self.columns, 10):
            label = str(start + 1)
            marks.append(label.ljust(10)[:10])
        return "".join(marks)[: self.columns]


def parse_clustal(text: str) -> list[tuple[str, str]]:
    """(name, aligned sequence) pairs of a Clustal file, in the order of its first block."""
    lines = text.splitlines()
    if not lines or not lines[0].upper().startswith(("CLUSTAL", "MUSCLE", "PROBCONS")):
        raise NotAnAlignment("not a Clustal file (its first line does not say CLUSTAL)")
    sequences: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line.strip() or line[0].isspace():  # blank, or the conservation line
            continue
        parts = line.split()
        if len(parts) < 2:
            raise NotAnAlignment(f"a line without a sequence: {line[:40]!r}")
        sequences.setdefault(parts[0], []).append(parts[1])
    if not sequences:
        raise NotAnAlignment("no sequences")
    return [(name, "".join(chunks)) for name, chunks in sequences.items()]


def parse_fasta(text: str) -> list[tuple[str, str]]:
    """(name, sequence) pairs of a FASTA file; the name is the header's first word."""
    pairs: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(">"):
            words = line[1:].split()
            pairs.append((words[0] if words else f"sequence {len(pairs) + 1}", []))
        elif line.strip():
            if not pairs:
                raise NotAnAlignment("not FASTA (no '>' line before the first sequence)")
            pairs[-1][1].append(line.strip())
    if not pairs:
        raise NotAnAlignment("no sequences")
    return [(name, "".join(chunks)) for name, chunks in pairs]


def view(pairs: list[tuple[str, str]]) -> AlignmentView:
    """The drawn alignment of aligned sequences; NotAnAlignment if they are not aligned
    (of different lengths) or too large to draw."""
    lengths = {len(seq) for _, seq in pairs}
    if len(lengths) != 1:
        raise NotAnAlignment("the sequences have different lengths: not an alignment")
    columns = lengths.pop()
    if columns == 0:
        raise NotAnAlignment("the sequences are empty")
    if columns * len(pairs) > MAX_CELLS:
        raise NotAnAlignment(f"too large to draw here ({len(pairs)} sequences of {columns} "
                             "columns)")  # fmt: skip
    upper = [seq.upper() for _, seq in pairs]
    letters = Counter("".join(upper))
    residues = sum(n for letter, n in letters.items() if letter not in GAPS)
    nucleic = residues > 0 and sum(letters[b] for b in NUCLEIC) >= 0.9 * residues
    classes = NUCLEIC_CLASSES if nucleic else PROTEIN_CLASSES
    rows = tuple(Row(name, tuple(_runs(seq, classes))) for (name, seq) in pairs)
    columns_text = ["".join(col) for col in zip(*upper, strict=True)]
    return AlignmentView(
        rows=rows,
        conservation="".join(_conserved(col) for col in columns_text),
        consensus="".join(_consensus(col) for col in columns_text),
        columns=columns,
        nucleic=nucleic,
    )


def _runs(seq: str, classes: dict[str, str]) -> Iterable[Run]:
    start = 0
    current = classes.get(seq[0].upper(), "") if seq else ""
    for i in range(1, len(seq) + 1):
        cls = classes.get(seq[i].upper(), "") if i < len(seq) else None
        if cls != current:
            yield Run(current, seq[start:i])
            start, current = i, cls or ""


def _conserved(column: str) -> str:
    if any(c in GAPS for c in column):
        return " "
    kinds = set(column)
    if len(kinds) == 1:
        return "*"
    if any(kinds <= set(group) for group in STRONG):
        return ":"
    if any(kinds <= set(group) for group in WEAK):
        return "."
    return " "


def _consensus(column: str) -> str:
    counts = Counter(c for c in column if c not in GAPS)
    if not counts:
        return "-"
    letter, n = counts.most_common(1)[0]
    return letter if 2 * n >= len(column) else "·"


def read_alignment(text: str, media_type: str) -> AlignmentView:
    """The view of an output of ``media_type`` (application/clustal or application/fasta);
    NotAnAlignment with the reason when it cannot be drawn."""
    if media_type == "application/clustal":
        return view(parse_clustal(text))
    if media_type == "application/fasta":
        pairs = parse_fasta(text)
        if not any(set(seq) & GAPS for _, seq in pairs) and len({len(s) for _, s in pairs}) > 1:
            raise Unaligned("unaligned sequences")
        return view(pairs)
    raise NotAnAlignment(f"{media_type} is not drawn")
