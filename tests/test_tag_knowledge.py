"""Tag knowledge in post-processing: implications, category filters and limits, grouping; CLI and node."""

import dataclasses
import json
import shutil

import pytest
import torch
from PIL import Image

from jtp_core import TagOptions, tag_result
from jtp_core.tags.postprocess import select_tags
from jtp_core.tags.tag_knowledge import parse_category_values
from jtp_core.tags.tag_table import parse_tag_table

TABLE = parse_tag_table("""tag,category,implications
wolf,5,canis
canis,5,canine
canine,5,canid
canid,5,mammal
mammal,5,
fox,5,canine
t-shirt,0,shirt
shirt,0,topwear
topwear,0,clothing
clothing,0,
solo,0,
hi_res,7,
english_text,7,text
text,0,
krystal,4,fox
star_fox,3,
a,0,b
b,0,a
""")

# what a model would give: canis, topwear and text are not in its vocabulary
SCORES = {
    "wolf": 0.91, "mammal": 0.97, "canine": 0.80, "canid": 0.62, "fox": 0.15, "solo": 0.88, "t-shirt": 0.55,
    "shirt": 0.70, "clothing": 0.85, "hi_res": 0.75, "english_text": 0.30, "star_fox": 0.05, "krystal": 0.03,
    "furry_thing": 0.40, "a": 0.5, "b": 0.45,
}
VOCAB = list(SCORES)
PROBS = torch.tensor([SCORES[tag] for tag in VOCAB])


def tags_of(**options) -> list[str]:
    return [tag for tag, _ in select_tags(PROBS, VOCAB, TagOptions(tag_table=TABLE, **options))]


def test_a_table_with_options_off_changes_nothing():
    rows = torch.rand(20, len(VOCAB))
    for options in (
        TagOptions(),
        TagOptions(threshold=0.5, max_tags=4, exclude=("sol*",), trigger_words=("wolf",), order="alphabetical"),
        TagOptions(weighted=True, replace_underscores=False, escape_parentheses=False, separator=","),
    ):
        with_table = dataclasses.replace(options, tag_table=TABLE)
        for row in torch.cat([PROBS[None], rows]):
            assert tag_result(row, VOCAB, with_table) == tag_result(row, VOCAB, options)


def test_remove_implied_keeps_the_most_specific_tags():
    assert tags_of() == [
        "mammal", "wolf", "solo", "clothing", "canine", "hi_res", "shirt", "canid", "t-shirt", "a", "b",
        "furry_thing", "english_text",
    ]
    # wolf implies mammal, canine, canid; t-shirt implies shirt and clothing (through topwear)
    assert tags_of(implications="remove") == [
        "wolf", "solo", "hi_res", "t-shirt", "a", "b", "furry_thing", "english_text",
    ]


def test_remove_implied_only_counts_kept_impliers():
    # with wolf under the threshold, canine is the most specific canid tag left
    assert tags_of(implications="remove", threshold=0.92) == ["mammal"]
    assert tags_of(implications="remove", exclude=("wolf",))[:2] == ["solo", "canine"]


def test_tags_implying_each_other_are_both_kept():
    # a and b imply each other (a cycle in the data): neither is more specific
    kept = tags_of(implications="remove")
    assert "a" in kept and "b" in kept


def test_add_implied_completes_chains_scored_as_the_implier():
    result = tag_result(PROBS, VOCAB, TagOptions(tag_table=TABLE, implications="add", threshold=0.6))
    assert list(result.scores) == [
        "mammal", "wolf", "canis", "canine", "canid", "solo", "clothing", "hi_res", "shirt", "topwear",
    ]
    assert result.scores["canis"] == result.scores["canid"] == 0.91  # from wolf; canid's own 0.62 is raised
    assert result.scores["topwear"] == 0.70 and result.scores["mammal"] == 0.97  # own score when higher
    assert result.text.startswith("mammal, wolf, canis, canine, canid, solo")


def test_add_implied_respects_exclusions_and_max_tags():
    added = tags_of(implications="add", threshold=0.6, exclude=("canis",), exclude_categories=("meta",))
    assert "canis" not in added and "hi_res" not in added and "canine" in added
    assert tags_of(implications="add", threshold=0.6, max_tags=4) == ["mammal", "wolf", "canis", "canine"]
    assert "text" in tags_of(implications="add") and "text" not in tags_of(implications="add", trigger_words=("text",))


def test_exclude_categories_including_unknown():
    picked = tags_of(exclude_categories=("species", "meta"), threshold=0.5)
    assert picked == ["solo", "clothing", "shirt", "t-shirt"]
    assert "furry_thing" not in tags_of(exclude_categories=("unknown",))


def test_category_thresholds_replace_the_global_one():
    picked = tags_of(category_thresholds={"species": 0.9, "copyright": 0.01})
    assert "canine" not in picked and "wolf" in picked  # species needs 0.9
    assert "star_fox" in picked and "krystal" not in picked  # copyright may go below 0.2; character may not
    assert "solo" in picked and "english_text" in picked  # other categories keep the global threshold


def test_category_max_keeps_the_best_of_each_category():
    picked = tags_of(category_max={"species": 2, "meta": 0})
    assert [tag for tag in picked if TABLE.category(tag) == "species"] == ["mammal", "wolf"]
    assert "hi_res" not in picked and "english_text" not in picked and "solo" in picked
    # counted after removing implied tags: the two most specific species tags
    assert tags_of(implications="remove", category_max={"species": 1}, threshold=0.1)[0] == "wolf"


def test_grouped_output_follows_e621_order_or_the_one_given():
    picked = tags_of(threshold=0.01, group_by_category=True, max_tags=0)
    categories = [TABLE.category(tag) for tag in picked]
    e621_order = ["copyright", "character", "species", "general", "meta", "unknown"]
    assert categories == sorted(categories, key=e621_order.index) and categories != sorted(categories)
    assert picked[:3] == ["star_fox", "krystal", "mammal"]
    assert picked[-1] == "furry_thing"
    first = tags_of(threshold=0.5, group_by_category=True, category_order=("meta", "general"), order="alphabetical")
    assert first == ["hi_res", "clothing", "shirt", "solo", "t-shirt", "canid", "canine", "mammal", "wolf"]


def test_bad_options_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="exclude_categories: unknown category 'specis'; known: general"):
        TagOptions(tag_table=TABLE, exclude_categories=("specis",))
    with pytest.raises(ValueError, match="implications must be one of auto, off, remove, add, inherit"):
        TagOptions(tag_table=TABLE, implications="prune")
    with pytest.raises(ValueError, match="category_thresholds: species must be between 0 and 1"):
        TagOptions(tag_table=TABLE, category_thresholds={"species": 2})
    with pytest.raises(ValueError, match="category_max: meta must be a whole number"):
        TagOptions(tag_table=TABLE, category_max={"meta": -1})
    needs_table = TagOptions(implications="remove", category_max={"meta": 1})  # fine for models that know tags
    with pytest.raises(ValueError, match="implications, category_max need a tag table"):
        select_tags(torch.tensor([0.9]), ["solo"], needs_table)  # a JTP-1 model does not
    with pytest.raises(ValueError, match="'inherit' is a mode of the JTP-3 / Hydra models; JTP-1 models offer"):
        select_tags(torch.tensor([0.9]), ["solo"], TagOptions(tag_table=TABLE, implications="inherit"))
    with pytest.raises(ValueError, match="category_order is used only together with group_by_category"):
        TagOptions(tag_table=TABLE, category_order=("species",))


def test_options_stay_hashable_values():
    options = TagOptions(tag_table=TABLE, category_max={"Species": 2}, exclude_categories="meta, Lore")
    assert options.exclude_categories == ("meta", "lore") and dict(options.category_max) == {"species": 2}
    assert dataclasses.replace(options) == options and hash(dataclasses.replace(options)) == hash(options)


def test_parse_category_values():
    assert parse_category_values("species=0.5, Meta: 0.3\ngeneral = 0.25", "t", float) == {
        "species": 0.5, "meta": 0.3, "general": 0.25,
    }
    with pytest.raises(ValueError, match="expected category=value, got 'species'"):
        parse_category_values("species", "t", float)
    with pytest.raises(ValueError, match="unknown category 'specis'"):
        parse_category_values("specis=2", "t", int)
    with pytest.raises(ValueError, match="'meta=lots'"):
        parse_category_values("meta=lots", "t", int)


# the tiny checkpoint's tags are anthro, female, male, solo, membrane_(anatomy), blue_eyes, red_hat, hi_res, tag_8...
TINY_TABLE = """tag,category,implications
red_hat,0,hat
hat,0,headwear
headwear,0,clothing
clothing,0,
hi_res,7,
anthro,0,
blue_eyes,0,
"""


def test_cli_flags_reach_the_tag_command(tmp_path, linear_checkpoint, capsys):
    from jtp_core.cli.main import main

    Image.new("RGB", (50, 40), (120, 80, 200)).save(tmp_path / "a.png")
    (tmp_path / "tiny.csv").write_text(TINY_TABLE)
    common = ["tag", str(tmp_path / "a.png"), "--model", str(linear_checkpoint), "--threshold", "0", "--json"]
    assert main(common) == 0
    plain = json.loads(capsys.readouterr().out)["scores"]
    flags = ["--tag-table", str(tmp_path / "tiny.csv"), "--implications", "add", "--exclude-categories", "meta",
             "--category-max", "unknown=2", "--group-by-category"]
    assert main(common + flags) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert "hi_res" in plain and "hi_res" not in scores
    assert scores["hat"] == scores["headwear"] == scores["clothing"] == plain["red_hat"]
    unknown = [tag for tag in scores if tag.startswith("tag_") or tag in ("female", "male", "solo")]
    assert len(unknown) == 2 and list(scores)[-2:] == unknown  # unknown tags last, two at most


def test_cli_offline_without_the_table_is_a_clear_error(tmp_path, linear_checkpoint, capsys):
    from jtp_core.cli.main import main

    Image.new("RGB", (50, 40)).save(tmp_path / "a.png")
    code = main(["tag", str(tmp_path / "a.png"), "--model", str(linear_checkpoint), "--models-dir", str(tmp_path),
                 "--offline", "--implications", "remove"])
    assert code == 2 and "jtp-3-hydra-tags.csv is not downloaded; put it in" in capsys.readouterr().err


def _tagger_widgets(node):
    widgets = {key: opts.get("default") for key, (_, opts) in node.INPUT_TYPES()["required"].items()
               if key not in ("jtp_model", "image")}
    widgets.update(threshold=0.0, max_tags=0)
    return widgets


def test_tag_options_node_drives_the_tagger(comfy, linear_checkpoint):
    standin, pack = comfy
    shutil.copytree(linear_checkpoint, standin.models_dir / "jtp" / "TINY")
    (standin.models_dir / "jtp" / "tiny.csv").write_text(TINY_TABLE)
    options_node = pack.NODE_CLASS_MAPPINGS["JTPTagOptions"]
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["JTPTagOptions"] == "JTP Tag Options"
    assert options_node.INPUT_TYPES()["required"]["tag_table"][0] == ["jtp-3-hydra-tags.csv", "tiny.csv"]
    (overrides,) = options_node().build(
        tag_table="tiny.csv", implications="remove", exclude_categories="unknown", category_thresholds="",
        category_max="", group_by_category=True, category_order="meta",
    )
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY", "cpu", "fp32")
    tagger = pack.NODE_CLASS_MAPPINGS["JTPTagger"]
    widgets = _tagger_widgets(tagger)
    out = tagger().tag(jtp_model=model, image=torch.rand(1, 32, 32, 3), tag_options=overrides, **widgets)
    plain = tagger().tag(jtp_model=model, image=torch.rand(1, 32, 32, 3), **widgets)
    assert len(plain["result"][0][0].split(", ")) == 16
    assert sorted(json.loads(out["result"][1][0])) == sorted(["hi_res", "red_hat", "anthro", "blue_eyes"])
    assert out["result"][0][0].startswith("hi res, ")  # meta first, as asked


def test_tag_options_node_with_everything_off_reads_no_table(comfy):
    _, pack = comfy  # models/jtp is empty: a read or download attempt would fail
    (overrides,) = pack.NODE_CLASS_MAPPINGS["JTPTagOptions"]().build(
        tag_table="jtp-3-hydra-tags.csv", implications="off", exclude_categories="", category_thresholds="",
        category_max="", group_by_category=False, category_order="",
    )
    assert "tag_table" not in overrides


def test_tag_options_node_ignores_category_order_while_grouping_is_off(comfy):
    _, pack = comfy  # a user turns grouping off and leaves the order text in its box: no error, no order
    (overrides,) = pack.NODE_CLASS_MAPPINGS["JTPTagOptions"]().build(
        tag_table="jtp-3-hydra-tags.csv", implications="off", exclude_categories="", category_thresholds="",
        category_max="", group_by_category=False, category_order="species, meta",
    )
    assert overrides["category_order"] == "" and "tag_table" not in overrides


def test_tag_options_node_reports_bad_settings(comfy):
    _, pack = comfy
    with pytest.raises(ValueError, match="category_max: expected category=value, got 'two'"):
        pack.NODE_CLASS_MAPPINGS["JTPTagOptions"]().build(
            tag_table="jtp-3-hydra-tags.csv", implications="off", exclude_categories="", category_thresholds="",
            category_max="two", group_by_category=False, category_order="",
        )


def test_grouping_flags_never_swallow_the_image_path():
    from jtp_core.cli.main import build_parser

    args = build_parser().parse_args(["tag", "--group-by-category", "img.png"])
    assert args.images == ["img.png"] and args.group_by_category and args.category_order == ""
    args = build_parser().parse_args(["tag", "--category-order", "species,meta", "img.png"])
    assert args.images == ["img.png"] and args.category_order == "species,meta"
