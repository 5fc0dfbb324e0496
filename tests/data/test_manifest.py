"""Row sources: LibriSpeech's on-disk layout, `slp data manifest`, `slp data inspect`, clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from slp_toolkit.cli import main
from slp_toolkit.config import DataConfig
from slp_toolkit.data.manifest import DataError, row_set
from slp_toolkit.data.splits import load_split
from slp_toolkit.data.text import normalize_text
from slp_toolkit.synth.corpus import librispeech_layout


@pytest.fixture(scope="module")
def libri(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("LibriSpeech") / "dev-clean"
    assert librispeech_layout(corpus / "test", out) > 3
    return out


def test_librispeech_layout_loads_with_the_right_transcripts(libri, corpus):
    original = {r["transcription"].upper(): r for r in csv.DictReader((corpus / "test" / "metadata.csv").open())}
    ds = load_split(str(libri), DataConfig(min_seconds=0.0), 16000)
    assert len(ds) == len(original)
    for path, raw, text, speaker in zip(ds["path"], ds["raw_text"], ds["text"], ds["speaker"]):
        name = path.split("/")[-1]
        assert name.startswith(f"{speaker}-{speaker}0-") and name.endswith(".flac")
        assert raw in original and text == normalize_text(raw)
    # the same transcript file line a user would open
    rows = row_set(str(libri), DataConfig(), ("text",))
    first = next(rows.rows())
    trans = first.where.rsplit(":", 1)[0]
    assert trans.endswith(".trans.txt") and first.where.endswith(":1")


def test_librispeech_without_transcripts_is_one_line(tmp_path):
    (tmp_path / "19" / "198").mkdir(parents=True)
    (tmp_path / "19" / "198" / "19-198-0000.flac").write_bytes(b"")
    with pytest.raises(DataError, match=r"no SPEAKER/CHAPTER/\*.trans.txt transcripts"):
        load_split(str(tmp_path), DataConfig(format="librispeech"), 16000)
    with pytest.raises(DataError, match=r"no metadata.csv or metadata.jsonl .* no LibriSpeech"):
        load_split(str(tmp_path), DataConfig(), 16000)


def test_unreachable_hub_dataset_is_one_line():
    with pytest.raises(DataError, match=r"^hf:openslr/librispeech_asr:clean@validation: cannot load Hub dataset"):
        load_split("hf:openslr/librispeech_asr:clean@validation", DataConfig(), 16000)


def test_data_manifest_and_inspect_commands(libri, tmp_path, capsys):
    out = tmp_path / "dev.jsonl"
    assert main(["data", "manifest", str(libri), str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all(r["audio"].endswith(".flac") and r["text"].isupper() for r in records)
    capsys.readouterr()
    png = tmp_path / "hist.png"
    assert main(["data", "inspect", str(out), "--plot", str(png), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == info["kept"] == len(records) and info["hours"] > 0
    assert (
        png.stat().st_size > 1000
        and info["speakers"] >= 1
        and set(info["characters"]) <= set("abcdefghijklmnopqrstuvwxyz' ")
    )
    assert main(["data", "inspect", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such file or directory" in capsys.readouterr().err


def test_a_hub_class_label_column_reads_as_its_names(emotion_corpus, tmp_path):
    """IEMOCAP on the Hub stores its labels as a ClassLabel: rows (and so the model's id2label) get the names,
    not the ids, map-style and streamed alike."""
    import datasets

    from slp_toolkit.data.batches import hub_stream

    rows = list(csv.DictReader((emotion_corpus / "train" / "metadata.csv").open()))[:6]
    names = sorted({r["label"] for r in rows})
    features = datasets.Features({"audio": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    table = {"audio": [str(emotion_corpus / "train" / r["file_name"]) for r in rows],
             "label": [names.index(r["label"]) for r in rows]}  # fmt: skip
    (tmp_path / "hub").mkdir()
    datasets.Dataset.from_dict(table, features=features).to_parquet(str(tmp_path / "hub" / "train.parquet"))
    spec = f"hf:{tmp_path / 'hub'}@train"
    found = [r.fields["label"] for r in row_set(spec, DataConfig(), ("label",)).rows()]
    assert found == [r["label"] for r in rows]
    stream, reader = hub_stream(spec, DataConfig(), ("label",))
    assert [reader.row("", record).fields["label"] for record in stream] == found
