"""WordNet provisioning from a Debian-layout folder (a tiny fake one, and the real one when installed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

pytest.importorskip("nltk")

from medgr2_reward import wordnet
from medgr2_reward.perturb import SynonymSource

MAN = """.TH LEXNAMES 5WN "Dec 2006" "WordNet 3.0"
.TS
l l l.
\\fBFile Number\\fP\t\\fBName\\fP\t\\fBContents\\fP
_
00\tadj.all\tall adjective clusters
01\tadj.pert\trelational adjectives (pertainyms)
02\tadv.all\tall adverbs
03\tnoun.Tops\tunique beginner for nouns
04\tnoun.act\tnouns denoting acts or actions
05\tnoun.animal\tnouns denoting animals
06\tnoun.artifact\tnouns denoting man-made objects
07\tnoun.attribute\tnouns denoting attributes of people and objects
08\tnoun.body\tnouns denoting body parts
.TE
"""
HEADER = "  1 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.\n"


def fake_debian_wordnet(folder: Path) -> Path:
    """A minimal Debian-layout WordNet: one noun synset {heart, bosom} in lexicographer file 08."""
    folder.mkdir(parents=True)
    line = "{off:08d} 08 n 02 heart 0 bosom 0 000 | the locus of feelings\n"
    off = len(HEADER)
    (folder / "data.noun").write_text(HEADER + line.format(off=off))
    (folder / "index.noun").write_text(HEADER + f"bosom n 1 0 1 0 {off:08d}  \nheart n 1 0 1 0 {off:08d}  \n")
    for pos in ("verb", "adj", "adv"):
        (folder / f"data.{pos}").write_text(HEADER)
        (folder / f"index.{pos}").write_text(HEADER)
    for name in ("noun.exc", "verb.exc", "adj.exc", "adv.exc", "cntlist.rev"):
        (folder / name).write_text("")
    (folder / "index.sense").write_text(f"heart%1:08:00:: {off:08d} 1 0\n")
    man = folder / "lexnames.5WN.gz"
    with gzip.open(man, "wt") as fh:
        fh.write(MAN)
    return folder


def test_lexnames_from_man_page(tmp_path):
    src = fake_debian_wordnet(tmp_path / "debian")
    text = wordnet.lexnames_from_man(src / "lexnames.5WN.gz")
    lines = text.splitlines()
    assert lines[0] == "00\tadj.all\t3" and lines[2] == "02\tadv.all\t4" and lines[8] == "08\tnoun.body\t1"
    assert len(lines) == 9


def test_provision_from_fake_debian_folder(tmp_path, monkeypatch):
    src = fake_debian_wordnet(tmp_path / "debian")
    root = wordnet.provision(src, src / "lexnames.5WN.gz", tmp_path / "nltk_data")
    assert (root / "corpora" / "wordnet" / "lexnames").is_file()
    reader = wordnet.load_reader(root)
    synset = reader.synsets("heart")[0]
    assert synset.lexname() == "noun.body" and set(synset.lemma_names()) == {"heart", "bosom"}
    assert SynonymSource(reader)("Heart") == ("bosom",)
    # a second call reuses the copy; force rebuilds it
    stamp = (root / "corpora" / "wordnet" / "lexnames").stat().st_mtime_ns
    assert wordnet.provision(src, src / "lexnames.5WN.gz", root) == root
    assert (root / "corpora" / "wordnet" / "lexnames").stat().st_mtime_ns == stamp
    wordnet.provision(src, src / "lexnames.5WN.gz", root, force=True)


def test_data_root_honours_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv(wordnet.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert wordnet.data_root() == tmp_path / "cache" / "medgr2" / "nltk_data"
    monkeypatch.setenv(wordnet.ENV_DATA_DIR, str(tmp_path / "mine"))
    assert wordnet.data_root() == tmp_path / "mine"


def test_missing_files_name_both_fixes(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(wordnet.WordNetUnavailable) as err:
        wordnet.provision(tmp_path / "empty", tmp_path / "none.gz", tmp_path / "out")
    msg = str(err.value)
    assert "missing data.noun" in msg and "apt-get install -y wordnet-base wordnet-sense-index" in msg
    assert "nltk.downloader wordnet" in msg
    src = fake_debian_wordnet(tmp_path / "debian")
    with pytest.raises(wordnet.WordNetUnavailable, match="lexnames"):
        wordnet.provision(src, tmp_path / "no-man-page.gz", tmp_path / "out")


def test_cli_setup_wordnet(tmp_path):
    from typer.testing import CliRunner

    from medgr2.cli import build_app

    src = fake_debian_wordnet(tmp_path / "debian")
    args = ["setup", "wordnet", "--source", str(src), "--man-page", str(src / "lexnames.5WN.gz"),
            "--root", str(tmp_path / "nd")]
    result = CliRunner().invoke(build_app(args), args)
    assert result.exit_code == 0, result.output
    assert "WordNet ready" in result.output and "1 senses" in result.output
    bad = ["setup", "wordnet", "--source", str(tmp_path), "--root", str(tmp_path / "nd2")]
    result = CliRunner().invoke(build_app(bad), bad)
    assert result.exit_code == 2 and "wordnet-base" in result.output


@pytest.mark.skipif(not (wordnet.DEBIAN_WORDNET / "data.noun").is_file() or not wordnet.DEBIAN_LEXNAMES_MAN.is_file(),
                    reason="Debian's wordnet-base is not installed (apt-get install -y wordnet-base wordnet-sense-index)")
def test_provision_from_real_debian_wordnet(tmp_path):
    root = wordnet.provision(root=tmp_path / "nltk_data")
    reader = wordnet.load_reader(root)
    assert len(reader._lexnames) == 45
    assert reader.synsets("dog")[0].lexname() == "noun.animal"
    assert "gush" in SynonymSource(reader)("effusion")
