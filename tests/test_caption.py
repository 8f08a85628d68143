"""Folder captioning core: listing, modes, failures, mirroring, sidecars, reports, streaming, atomic writes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jtp_core import TagOptions, tag_result
from jtp_core.atomic_write import atomic_write_text
from jtp_core.caption import CaptionRequest, caption_images, plan_captions, save_captions
from jtp_core.caption_files import caption_tag_key, merge_caption
from jtp_core.images import open_image
from jtp_core.postprocess import normalize_tag
from jtp_core.streaming import stream_batches

ALL_TAGS = TagOptions(threshold=0.0, max_tags=0)  # every one of the tiny model's 16 tags, by score


def make_image(path: Path, size=(48, 32), mode="RGB", seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode, 3)
    array = (rng.random((size[1], size[0], channels)) * 255).astype(np.uint8)
    image = Image.fromarray(array, "RGBA" if channels == 4 else "RGB")
    if mode == "P":
        image = image.convert("P")
        image.info["transparency"] = 0
    image.save(path)
    return path


def expected_caption(tagger, path: Path, options: TagOptions) -> str:
    """What the plain one-image path gives: open, predict, format."""
    probs = tagger.predict_pils([open_image(path)])[0]
    return tag_result(probs, tagger.tags, options).text


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Nested folders, mixed formats and modes, plus files that must be left alone."""
    root = tmp_path / "data"
    make_image(root / "a.png", (64, 40), "RGBA", 1)
    make_image(root / "b.jpg", (30, 70), "RGB", 2)
    make_image(root / "sub" / "c.webp", (50, 50), "RGB", 3)
    make_image(root / "sub" / "deeper" / "d.gif", (20, 90), "P", 4)
    make_image(root / "sub" / "E.PNG", (33, 44), "RGB", 5)
    make_image(root / ".hidden" / "f.png", (20, 20), "RGB", 6)
    make_image(root / ".g.png", (20, 20), "RGB", 7)
    (root / "notes.md").write_text("not an image")
    return root


def captions_in(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.txt"))}


def test_recursive_run_captions_every_visible_image_like_the_plain_path(dataset, tiny_tagger):
    options = TagOptions(threshold=0.3, trigger_words=("mychar",))
    summary = caption_images(tiny_tagger, CaptionRequest([dataset], recursive=True, options=options, batch_size=2))
    captions = captions_in(dataset)
    assert sorted(captions) == ["a.txt", "b.txt", "sub/E.txt", "sub/c.txt", "sub/deeper/d.txt"]
    for name, text in captions.items():
        image = next(p for p in (dataset / name).parent.iterdir() if p.stem == Path(name).stem and p.suffix != ".txt")
        assert text == expected_caption(tiny_tagger, image, options)
        assert text.startswith("mychar, ")
    assert (summary.tagged, summary.skipped, summary.failed) == (5, 0, [])
    assert not (dataset / ".hidden" / "f.txt").exists() and not (dataset / ".g.txt").exists()


def test_non_recursive_run_and_explicit_files(dataset, tiny_tagger):
    summary = caption_images(tiny_tagger, CaptionRequest([dataset, dataset / "sub" / "c.webp"]))
    assert sorted(captions_in(dataset)) == ["a.txt", "b.txt", "sub/c.txt"]
    assert summary.tagged == 3


def test_overlapping_inputs_caption_each_image_once(dataset, tiny_tagger, tmp_path):
    inputs = [dataset, dataset / "a.png", dataset / "sub"]  # a.png and sub/ are named twice
    summary = caption_images(tiny_tagger, CaptionRequest(inputs, recursive=True))
    assert (summary.tagged, summary.failed) == (5, [])
    mirrored = caption_images(tiny_tagger, CaptionRequest(inputs, recursive=True, output_dir=tmp_path / "out"))
    assert mirrored.tagged == 5 and len(list((tmp_path / "out").rglob("*.txt"))) == 5


def test_extensions_filter(dataset, tiny_tagger):
    caption_images(tiny_tagger, CaptionRequest([dataset], recursive=True, extensions=("png",)))
    assert sorted(captions_in(dataset)) == ["a.txt", "sub/E.txt"]


def _existing(folder: Path) -> dict[str, bytes]:
    """One image per kind of existing caption."""
    contents = {
        "none": None,
        "empty": b"",
        "blank": b"  \n",
        "hand": b"my Char, Blue_Eyes, (solo:1.2), sitting\n",
        "latin1": "caf\xe9, blue eyes".encode("latin-1"),
    }
    for index, (name, data) in enumerate(contents.items()):
        make_image(folder / f"{name}.png", seed=index)
        if data is not None:
            (folder / f"{name}.txt").write_bytes(data)
    return contents


@pytest.mark.parametrize("mode", ["skip", "overwrite", "append", "prepend"])
def test_modes_against_existing_captions(tmp_path, tiny_tagger, mode):
    contents = _existing(tmp_path)
    options = TagOptions(threshold=0.0, max_tags=0, trigger_words=("my char",))
    summary = caption_images(tiny_tagger, CaptionRequest([tmp_path], mode=mode, options=options))
    fresh = {name: expected_caption(tiny_tagger, tmp_path / f"{name}.png", options) for name in contents}
    text = {name: (tmp_path / f"{name}.txt").read_bytes() for name in contents}

    # no caption, or an empty / whitespace-only one: every mode writes the new caption
    for name in ("none", "empty", "blank"):
        assert text[name].decode() == fresh[name]
    if mode == "skip":
        assert text["hand"] == contents["hand"] and text["latin1"] == contents["latin1"]
        assert (summary.tagged, summary.skipped, summary.failed) == (3, 2, [])
    elif mode == "overwrite":
        assert text["hand"].decode() == fresh["hand"] and text["latin1"].decode() == fresh["latin1"]
        assert (summary.tagged, summary.skipped, summary.failed) == (5, 0, [])
    else:
        # the user's bytes are never rewritten through a lossy decode: reported, left as they were
        assert text["latin1"] == contents["latin1"]
        assert [(path.name, "UTF-8" in reason) for path, reason in summary.failed] == [("latin1.png", True)]
        merged = text["hand"].decode()
        keys = [caption_tag_key(tag) for tag in merged.split(", ")]
        assert len(keys) == len(set(keys)), f"duplicated tag in {merged!r}"
        assert set(keys) == {caption_tag_key(tag) for tag in fresh["hand"].split(", ")} | {"sitting"}
        assert "my Char, Blue_Eyes, (solo:1.2), sitting" in merged  # the existing text is kept as it was
        if mode == "append":
            assert merged.startswith("my Char, Blue_Eyes, (solo:1.2), sitting, ")
        else:
            assert merged.endswith(", my Char, Blue_Eyes, (solo:1.2), sitting")


def test_merge_puts_missing_trigger_first_and_skips_unchanged(tmp_path, tiny_tagger):
    image = make_image(tmp_path / "x.png")
    everything = expected_caption(tiny_tagger, image, ALL_TAGS)
    (tmp_path / "x.txt").write_text("hand, written")
    options = TagOptions(threshold=0.0, max_tags=0, trigger_words=("ohwx",))
    caption_images(tiny_tagger, CaptionRequest([tmp_path], mode="append", options=options))
    assert (tmp_path / "x.txt").read_text() == f"ohwx, hand, written, {everything}"
    before = os.stat(tmp_path / "x.txt").st_mtime_ns
    summary = caption_images(tiny_tagger, CaptionRequest([tmp_path], mode="append", options=options))
    assert summary.tagged == 1 and os.stat(tmp_path / "x.txt").st_mtime_ns == before  # nothing new: not rewritten


def test_merge_caption_compares_spellings_and_weights():
    merged = merge_caption("Blue_Eyes, (membrane \\(anatomy\\):1.3)", ["blue eyes", "membrane_(anatomy)", "solo"],
                           "append")
    assert merged == "Blue_Eyes, (membrane \\(anatomy\\):1.3), solo"
    assert normalize_tag("Blue_Eyes") == caption_tag_key("(blue eyes:0.9)")


def test_corrupt_truncated_and_empty_files_are_reported_and_skipped(tmp_path, tiny_tagger):
    for index in range(6):
        make_image(tmp_path / f"{index}.png", (40, 40), seed=index)
    (tmp_path / "2.png").write_bytes(b"")  # zero bytes, in the middle of the run
    (tmp_path / "3.png").write_bytes(b"this is not a png at all")
    good = make_image(tmp_path / "7.jpg", (200, 200)).read_bytes()
    (tmp_path / "7.jpg").write_bytes(good[: len(good) // 2])  # truncated
    summary = caption_images(tiny_tagger, CaptionRequest([tmp_path], batch_size=2, workers=2))
    failed = {path.name: reason for path, reason in summary.failed}
    assert set(failed) == {"2.png", "3.png", "7.jpg"}
    assert "empty" in failed["2.png"] and "not a readable image" in failed["3.png"]
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["0.txt", "1.txt", "4.txt", "5.txt"]
    assert (tmp_path / "4.txt").read_text() == expected_caption(tiny_tagger, tmp_path / "4.png", TagOptions())
    assert summary.tagged == 4
    text = summary.to_text()
    assert "4 captioned" in text and "3 failed" in text and str(tmp_path / "3.png") in text


def test_output_folder_mirrors_the_input_tree(dataset, tiny_tagger, tmp_path):
    out = tmp_path / "captions"
    before = sorted(p.name for p in dataset.rglob("*"))
    summary = caption_images(tiny_tagger, CaptionRequest([dataset], recursive=True, output_dir=out))
    assert sorted(captions_in(out)) == ["a.txt", "b.txt", "sub/E.txt", "sub/c.txt", "sub/deeper/d.txt"]
    assert sorted(p.name for p in dataset.rglob("*")) == before  # nothing written beside the images
    assert summary.tagged == 5
    rerun = caption_images(tiny_tagger, CaptionRequest([dataset], recursive=True, output_dir=out))
    assert (rerun.tagged, rerun.skipped) == (0, 5)  # skip mode looks in the output folder


def test_two_images_sharing_a_caption_file_are_not_both_written(tmp_path, tiny_tagger):
    make_image(tmp_path / "x.jpg", seed=1)
    make_image(tmp_path / "x.png", seed=2)
    summary = caption_images(tiny_tagger, CaptionRequest([tmp_path]))
    assert [path.name for path, _ in summary.failed] == ["x.png"]
    assert (tmp_path / "x.txt").read_text() == expected_caption(tiny_tagger, tmp_path / "x.jpg", TagOptions())


def test_sidecar_scores_and_resuming_a_missing_sidecar(tmp_path, tiny_tagger):
    image = make_image(tmp_path / "x.png")
    (tmp_path / "x.txt").write_text("kept")
    caption_images(tiny_tagger, CaptionRequest([tmp_path], sidecar_floor=0.25))
    sidecar = json.loads((tmp_path / "x.jtp.json").read_text())
    probs = tiny_tagger.predict_pils([open_image(image)])[0]
    expected = {tag: round(float(p), 4) for tag, p in zip(tiny_tagger.tags, probs, strict=True) if p > 0.25}
    assert sidecar["scores"] == expected and sidecar["floor"] == 0.25 and sidecar["image"] == "x.png"
    assert list(sidecar["scores"].values()) == sorted(expected.values(), reverse=True)
    assert (tmp_path / "x.txt").read_text() == "kept"  # skip mode: the caption stays, the sidecar is added


def test_report_and_stopping_between_batches(tmp_path, tiny_tagger):
    for index in range(7):
        make_image(tmp_path / f"{index}.png", seed=index)
    report = tmp_path / "out" / "report.json"
    seen = []

    def stop_after_two_batches(done, total):
        seen.append((done, total))
        if len(seen) == 2:
            raise KeyboardInterrupt

    request = CaptionRequest([tmp_path], batch_size=3, report_path=report)
    with pytest.raises(KeyboardInterrupt):
        caption_images(tiny_tagger, request, on_progress=stop_after_two_batches)
    assert seen == [(3, 7), (6, 7)]
    assert sorted(p.stem for p in tmp_path.glob("*.txt")) == [str(i) for i in range(6)]
    partial = json.loads(report.read_text())
    assert partial["interrupted"] is True and partial["tagged"] == 6

    summary = caption_images(tiny_tagger, request)
    assert (summary.tagged, summary.skipped) == (1, 6)
    assert json.loads(report.read_text()) == {**summary.to_dict(), "seconds": round(summary.seconds, 3)}
    assert summary.images_per_second > 0


def test_decode_workers_do_not_change_the_captions(dataset, tiny_tagger, tmp_path):
    outputs = {}
    for workers in (0, 1, 3):
        out = tmp_path / f"w{workers}"
        caption_images(tiny_tagger, CaptionRequest([dataset], recursive=True, output_dir=out, workers=workers,
                                                   batch_size=2, options=ALL_TAGS))
        outputs[workers] = captions_in(out)
    assert outputs[0] == outputs[1] == outputs[3] and len(outputs[0]) == 5


def test_stream_keeps_order_and_bounds_memory():
    lock = threading.Lock()
    state = {"loaded": 0, "consumed": 0, "peak": 0}

    def load(item: int) -> torch.Tensor:
        if item % 10 == 7:
            raise ValueError(f"bad {item}")
        with lock:
            state["loaded"] += 1
            state["peak"] = max(state["peak"], state["loaded"] - state["consumed"])
        return torch.full((1,), float(item))

    items, failed = [], []
    for batch in stream_batches(range(200), load, batch_size=4, workers=3, prefetch=2):
        items += batch.items
        failed += batch.failed
        # pixels is None exactly when no item of the batch decoded; else one row per item, in order
        if batch.items:
            assert batch.pixels is not None and batch.pixels[:, 0].tolist() == [float(i) for i in batch.items]
        else:
            assert batch.pixels is None and batch.failed
        with lock:
            state["consumed"] += len(batch.items)
    assert items == [i for i in range(200) if i % 10 != 7]
    assert failed == [(i, f"ValueError: bad {i}") for i in range(7, 200, 10)]
    assert state["peak"] <= 4 * 2 + 3 + 4  # the window, plus the batch being handed over


def test_plan_skips_without_opening_images(tmp_path):
    (tmp_path / "x.png").write_bytes(b"garbage")  # would fail if opened
    (tmp_path / "x.txt").write_text("done")
    plan = plan_captions(CaptionRequest([tmp_path]))
    assert (plan.jobs, plan.skipped) == ([], 1)


def test_request_validation(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        CaptionRequest([tmp_path], mode="replace")
    with pytest.raises(ValueError, match="image extension"):
        CaptionRequest([tmp_path], caption_extension="png")
    assert CaptionRequest([tmp_path], caption_extension="caption").caption_extension == ".caption"
    assert CaptionRequest(str(tmp_path), extensions="png, .JPG").extensions == (".png", ".jpg")


def test_atomic_write_leaves_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    target.write_text("old")
    os.chmod(target, 0o640)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]  # no temp file left behind
    monkeypatch.undo()
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and (os.stat(target).st_mode & 0o777) == 0o640


def test_unwritable_output_is_a_failure_for_that_image(tmp_path, tiny_tagger):
    make_image(tmp_path / "in" / "x.png")
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    summary = caption_images(tiny_tagger, CaptionRequest([tmp_path / "in"], output_dir=blocker))
    assert [path.name for path, _ in summary.failed] == ["x.png"] and summary.tagged == 0


def test_save_captions_modes_and_mirroring(tmp_path):
    a = make_image(tmp_path / "set" / "a.png")
    b = make_image(tmp_path / "set" / "sub" / "b.png")
    (tmp_path / "set" / "a.txt").write_text("hand, blue eyes")
    summary = save_captions([(a, "blue_eyes, solo"), (b, "solo")], mode="append")
    assert (tmp_path / "set" / "a.txt").read_text() == "hand, blue eyes, solo"
    assert (tmp_path / "set" / "sub" / "b.txt").read_text() == "solo"
    assert (summary.tagged, summary.skipped) == (2, 0)
    out = tmp_path / "out"
    summary = save_captions([(a, "x"), (b, "y")], output_dir=out)
    assert (out / "a.txt").read_text() == "x" and (out / "sub" / "b.txt").read_text() == "y"
    again = save_captions([(a, "z")], output_dir=out)
    assert again.skipped == 1 and (out / "a.txt").read_text() == "x"


def test_save_captions_puts_trigger_words_first_in_every_mode(tmp_path):
    image = make_image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("existing tag")
    save_captions([(image, "blue eyes, mychar, solo")], mode="append", trigger_words=("mychar",))
    assert (tmp_path / "a.txt").read_text() == "mychar, existing tag, blue eyes, solo"
    save_captions([(image, "blue eyes, solo")], mode="overwrite", trigger_words=("mychar",))
    assert (tmp_path / "a.txt").read_text() == "mychar, blue eyes, solo"


def test_unusable_report_folder_is_refused_before_any_caption_is_written(tmp_path, tiny_tagger):
    from jtp_core import JTPError

    make_image(tmp_path / "a.png")
    (tmp_path / "file").write_text("not a folder")
    request = CaptionRequest([tmp_path], report_path=tmp_path / "file" / "report.json")
    with pytest.raises(JTPError, match="cannot write the report"):
        caption_images(tiny_tagger, request)
    assert not (tmp_path / "a.txt").exists()

