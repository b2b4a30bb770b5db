"""Alignments and trees as the job page draws them: parsing, tracks, layout, limits, and
the page's HTML (nothing of an output is ever markup). No services needed."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jinja2 import Environment, FileSystemLoader

from appliance.pages import alignments, trees
from appliance.pages.alignments import NotAnAlignment, Unaligned
from tests.conftest import ROOT

CLUSTAL = """\
CLUSTAL O(1.2.4) multiple sequence alignment


HBA_HUMAN      MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF-DLSH
HBB_HUMAN      MVHLTPEEKSAVTALWGKV--NVDEVGGEALGRLLVVYPWTQRFFESFGDLST
               **:.*.:*. *.* ****  : .: *.***.*::..:* *:.:* .* ***

HBA_HUMAN      GSAQV
HBB_HUMAN      PDAVM
               ..* :
"""


def test_a_clustal_file_is_read_block_by_block_with_its_tracks() -> None:
    pairs = alignments.parse_clustal(CLUSTAL.replace("HF-DLSH", "HF-DLSH-"))
    assert [name for name, _ in pairs] == ["HBA_HUMAN", "HBB_HUMAN"]
    assert pairs[0][1].endswith("DLSH-GSAQV") and pairs[1][1].endswith("GDLSTPDAVM")
    drawn = alignments.view(pairs)
    assert drawn.columns == len(pairs[0][1]) == len(drawn.conservation) == len(drawn.consensus)
    # MM VV: identical; LH SL: no group; PT AP: weak (STPA); DE KE: strong (NDEQ, NEQK);
    # TK NS VA: weak (STNK, STNK, ATV); KV: none
    assert drawn.conservation[:12] == "**  ..::... "
    assert not drawn.nucleic
    # the runs of a row give back its sequence, and split where the colour changes
    row = drawn.rows[0]
    assert "".join(r.text for r in row.runs) == pairs[0][1]
    assert all(len({alignments.PROTEIN_CLASSES.get(c, "") for c in r.text}) == 1 for r in row.runs)
    assert row.runs[0] == alignments.Run("hyd", "MVL")  # M, V, L: one run, one element


@pytest.mark.parametrize(("column", "mark"), [
    ("WWW", "*"), ("STA", ":"), ("ILV", ":"), ("CSA", "."), ("ATV", "."),
    ("WKD", " "), ("W-W", " "),
])  # fmt: skip
def test_conservation_marks_as_clustal_does(column: str, mark: str) -> None:
    assert alignments._conserved(column) == mark


def test_the_consensus_needs_half_the_rows() -> None:
    assert alignments._consensus("AAC") == "A"
    assert alignments._consensus("AACD") == "A"  # half
    assert alignments._consensus("ACDE") == "·"
    assert alignments._consensus("---") == "-"


def test_aligned_fasta_is_drawn_unaligned_fasta_is_not_and_dna_is_nucleic() -> None:
    aligned = ">a desc\nACGT-ACGT\n>b\nACGTTACG-\n"
    drawn = alignments.read_alignment(aligned, "application/fasta")
    assert drawn.nucleic and [r.name for r in drawn.rows] == ["a", "b"]
    assert drawn.rows[0].runs[0] == alignments.Run("na", "A")
    with pytest.raises(Unaligned):
        alignments.read_alignment(">a\nMKV\n>b\nMKVLA\n", "application/fasta")


@pytest.mark.parametrize(("text", "media_type", "why"), [
    ("not clustal\nA ACG\n", "application/clustal", "first line"),
    ("CLUSTAL W\n\na ACGT\nb ACG\n", "application/clustal", "different lengths"),
    ("ACGT\n>a\nACGT\n", "application/fasta", "no '>' line"),
    ("", "application/fasta", "no sequences"),
    (">a\n" + "A" * 500_000 + "\n", "application/fasta", "too large"),
])  # fmt: skip
def test_what_cannot_be_drawn_says_why(text: str, media_type: str, why: str) -> None:
    with pytest.raises(NotAnAlignment, match=why):
        alignments.read_alignment(text, media_type)


GUIDE_TREE = """\
(
(
HBB_HUMAN:0.081,
HBB_HORSE:0.084)
:0.2,
(
HBA_HUMAN:0.025,
'HBA horse':0.022)
:0.2,
[a comment]MYG_PHYCA:0.4);
"""


def test_a_guide_tree_is_laid_out_leaves_in_order_lengths_to_scale() -> None:
    drawn = trees.read_tree(GUIDE_TREE)
    assert [label.text for label in drawn.labels] == [
        "HBB_HUMAN", "HBB_HORSE", "HBA_HUMAN", "HBA horse", "MYG_PHYCA"]  # fmt: skip
    assert drawn.leaves == 5 and drawn.height == trees.ROW * 6
    ys = [label.y for label in drawn.labels]
    assert ys == sorted(ys) and len(set(ys)) == 5
    by_name = {label.text: label.x for label in drawn.labels}
    assert by_name["MYG_PHYCA"] > by_name["HBA horse"]  # 0.4 from the root vs 0.222
    assert by_name["HBB_HORSE"] > by_name["HBB_HUMAN"]  # 0.284 vs 0.281
    # one vertical per inner node (3), one horizontal per non-root node (7)
    verticals = [line for line in drawn.lines if line.x1 == line.x2 and line.y1 != line.y2]
    assert len(drawn.lines) == 3 + 7 and len(verticals) == 3


def test_a_deep_tree_is_no_recursion_and_a_bad_one_says_why() -> None:
    deep = "(" * 5000 + "A" + ")" * 5000 + ";"
    assert trees.read_tree(deep).leaves == 1
    for text, why in [("(A,B)", "ends with ';'"), ("(A,B;", "without its ')'"),
                      ("A,B);", "outside"), ("(A:x,B);", "no number"),
                      ("(A,[B);", "without its ']'")]:  # fmt: skip
        with pytest.raises(trees.NotATree, match=re.escape(why)):
            trees.read_tree(text)


def test_the_page_escapes_every_name_of_an_output() -> None:
    env = Environment(loader=FileSystemLoader(ROOT / "appliance" / "pages" / "templates"),
                      autoescape=True)  # fmt: skip
    drawn: Any = env.get_template("drawn.html").module
    hostile = "<script>alert(1)</script>"
    alignment = alignments.view([(hostile, "MKV-"), ("b", "MKVL")])
    html = str(drawn.alignment(alignment, hostile))
    tree = str(drawn.tree(trees.read_tree(f"('{hostile}':1,b:1);"), hostile))
    for text in (html, tree):
        assert "<script>" not in text and "&lt;script&gt;" in text
    assert '<span class="r-hyd">V</span>-</td>' in html  # a gap is plain text


OUTPUTS = ROOT / "tests" / "data" / "outputs"  # what the shipped tools wrote for the example


def test_the_conservation_track_is_clustal_omegas_own() -> None:
    text = (OUTPUTS / "clustalo-example.aln").read_text()
    drawn = alignments.read_alignment(text, "application/clustal")
    theirs = "".join(line[25:] for line in text.splitlines()[3:] if line.startswith(" " * 25))
    theirs = theirs.ljust(drawn.columns)
    differ = [i for i, (a, b) in enumerate(zip(drawn.conservation, theirs, strict=True)) if a != b]
    # ClustalW's groups; Clustal Omega 1.2.4 leaves the P/A column 127 unmarked, which
    # those groups call weakly similar (STPA): the one difference, in 155 columns
    assert differ == [126] and (drawn.conservation[126], theirs[126]) == (".", " ")
    assert len(drawn.rows) == 4 and drawn.columns == 155


def test_the_shipped_tools_outputs_are_drawn() -> None:
    muscle = alignments.read_alignment((OUTPUTS / "muscle-example.afa").read_text(),
                                       "application/fasta")  # fmt: skip
    assert len(muscle.rows) == 4 and muscle.columns == 155
    tree = trees.read_tree((OUTPUTS / "clustalo-example.dnd").read_text())
    assert tree.leaves == 4 and len(tree.lines) == 3 * 4 - 3  # a rooted binary tree
    assert tree.labels[0].text == "sp|P02144|MYG_HUMAN"
