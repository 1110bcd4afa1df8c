import pytest

from prunekit.data.text import AUSTEN_DATA, AUSTEN_NOVELS, load_austen, read_text
from prunekit.errors import DatasetError

pytest.importorskip("rdata")
needs_austen = pytest.mark.skipif(not AUSTEN_DATA.with_suffix(".rdx").exists(),
                                  reason="apt-get install r-cran-janeaustenr")


@needs_austen
def test_persuasion_reads_as_text():
    text = load_austen("Persuasion")
    assert text.splitlines()[0] == "Persuasion"
    assert 80_000 < len(text.split()) < 90_000
    assert "Sir Walter Elliot" in text


@needs_austen
def test_read_text_sources(tmp_path):
    assert read_text("austen:pride and prejudice").startswith("PRIDE AND PREJUDICE")
    p = tmp_path / "a.txt"
    p.write_text("hello world")
    assert read_text(p) == "hello world"
    assert read_text(f"{p}+{p}") == "hello world\n\nhello world"


def test_bad_sources_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown Austen novel"):
        load_austen("ulysses")
    with pytest.raises(DatasetError, match="not a file"):
        read_text(tmp_path / "missing.txt")
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_text(bad)
    assert len(AUSTEN_NOVELS) == 6
