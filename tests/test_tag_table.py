"""Reading tag tables (tag,category,implications CSVs) and finding them like model files."""

import pytest
from fake_hub import FakeHub, serve

from jtp_core import DownloadError, TagTable, load_tag_table, read_tag_table
from jtp_core.errors import TagTableError
from jtp_core.hub.files import download_tag_table, list_tag_tables, resolve_tag_table
from jtp_core.hub.known_models import DEFAULT_TAG_TABLE, KNOWN_TAG_TABLES
from jtp_core.tags.tag_table import parse_tag_table

CANIDS = """tag,category,implications
wolf,5,canis
canis,5,canine
canine,5,canid
canid,5,mammal
mammal,5,
fox,5,canine
t-shirt,0,shirt
shirt,0,topwear clothing
topwear,0,clothing
clothing,0,
hi_res,meta,
"""


@pytest.fixture
def offline_hub(monkeypatch):
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched although the table is present")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


def test_implications_are_closed_transitively_nearest_first():
    table = parse_tag_table(CANIDS)
    assert table.implied("wolf") == ("canis", "canine", "canid", "mammal")
    assert table.implied("fox") == ("canine", "canid", "mammal")
    assert table.implied("mammal") == ()
    # two routes to clothing give it once
    assert table.implied("t-shirt") == ("shirt", "topwear", "clothing")


def test_cycles_end_and_no_tag_implies_itself():
    table = parse_tag_table("tag,category,implications\na,0,b\nb,0,c\nc,0,a d\nd,0,\nself,0,self\n")
    assert table.implied("a") == ("b", "c", "d")
    assert table.implied("c") == ("a", "d", "b")
    assert table.implied("self") == ()


def test_categories_by_number_or_name_and_unknown_tags():
    table = parse_tag_table(CANIDS)
    assert table.category("wolf") == "species"
    assert table.category("t-shirt") == "general"
    assert table.category("hi_res") == "meta"
    assert table.category("not_in_table") == "unknown" and table.implied("not_in_table") == ()
    assert "wolf" in table and "not_in_table" not in table and len(table) == 11


def test_lookup_ignores_case_and_spaces_for_underscores():
    table = parse_tag_table("tag,category,implications\nblue_eyes,0,eyes\nred_fox,5,fox\n")
    assert table.category("Blue Eyes") == "general"
    assert table.implied("red fox") == ("fox",)


def test_columns_may_come_in_any_order_and_be_quoted():
    table = parse_tag_table('implications,tag,category,notes\n"canine mammal",fox,5,x\n,"a,b",0,y\n')
    assert table.implied("fox") == ("canine", "mammal") and table.category("a,b") == "general"


def test_reads_a_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes("\ufeff".encode() + CANIDS.encode())
    assert read_tag_table(path).category("wolf") == "species"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"line 1: the header must name the columns tag,category,implications; found 'nothing'"),
        (b"tag,category\nwolf,5\n", r"line 1: the header must name .*found 'tag,category'"),
        (b"tag,category,implications\nwolf,5,canis\nfox,5\n", r"line 3: expected 3 fields, found 2"),
        (b"tag,category,implications\nwolf,5,\nfox,12,\n", r"line 3: unknown category '12' \(known: 0 general"),
        (b"tag,category,implications\nwolf,5,\n,0,\n", r"line 3: empty tag"),
        (b"tag,category,implications\nwolf,5,\nfox,5,\nWolf,5,\n", r"line 4: 'wolf' is already listed on line 2"),
        (b"tag,category,implications\nwolf,5,\"canis\n", r"line 2: not valid CSV"),
        (b"tag,category,implications\nwolf,5,\nfox,5,\xff\xfe\n", r"line 3: not UTF-8"),
        (b"tag,category,implications\n", r"no tags after the header"),
    ],
)
def test_malformed_table_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(TagTableError, match=message) as caught:
        read_tag_table(path)
    assert str(caught.value).startswith(str(path))


def test_missing_file_is_a_tag_table_error(tmp_path):
    with pytest.raises(TagTableError, match="cannot read tag table"):
        read_tag_table(tmp_path / "nope.csv")


def test_path_and_name_in_models_dir_resolve_without_network(tmp_path, offline_hub):
    models = tmp_path / "models"
    models.mkdir()
    (models / DEFAULT_TAG_TABLE).write_text(CANIDS)
    (models / "mine.csv").write_text(CANIDS)
    assert resolve_tag_table(DEFAULT_TAG_TABLE, [tmp_path / "other", models]) == models / DEFAULT_TAG_TABLE
    assert resolve_tag_table("mine.csv", [models]) == models / "mine.csv"
    table = load_tag_table(models / "mine.csv")
    assert isinstance(table, TagTable) and table.implied("fox")[0] == "canine"
    assert list_tag_tables([models]) == [DEFAULT_TAG_TABLE, "mine.csv"]


def test_table_downloaded_with_jtp3_is_used_offline(tmp_path, monkeypatch):
    """The loader puts RedRocket/JTP-3's data/jtp-3-hydra-tags.csv in models/jtp/JTP_3_HYDRA/ (the real layout);
    JTP Tag Options names the same file: found there offline instead of an error (online: no second download)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = tmp_path / "models"
    (models / "JTP_3_HYDRA").mkdir(parents=True)
    (models / "JTP_3_HYDRA" / "jtp-3-hydra-tags.csv").write_text(CANIDS)
    (models / "MY_MODEL").mkdir()
    (models / "MY_MODEL" / "jtp-3-hydra-tags.csv").write_text("tag,category,implications\n")  # not that file
    assert resolve_tag_table("jtp-3-hydra-tags.csv", [tmp_path / "other", models]) == (
        models / "JTP_3_HYDRA" / "jtp-3-hydra-tags.csv")
    assert load_tag_table("jtp-3-hydra-tags.csv", [models]).implied("wolf")[-1] == "mammal"
    (models / DEFAULT_TAG_TABLE).write_text(CANIDS)  # one in the models dir itself still comes first
    assert resolve_tag_table(DEFAULT_TAG_TABLE, [models]) == models / DEFAULT_TAG_TABLE


def test_unknown_or_not_downloaded_table_says_what_to_do(tmp_path, offline_hub):
    with pytest.raises(TagTableError, match=r"'nope.csv' is not a file, and not one of: jtp-3-hydra-tags.csv"):
        resolve_tag_table("nope.csv", [tmp_path])
    with pytest.raises(TagTableError, match=r"not downloaded; put it in .*RedRocket/JTP-3"):
        resolve_tag_table(DEFAULT_TAG_TABLE, [tmp_path], download=False)


def test_known_table_is_downloaded_into_the_models_dir(tmp_path):
    spec = KNOWN_TAG_TABLES[DEFAULT_TAG_TABLE]
    hub = FakeHub()
    hub.files[f"{spec.repo_id}/{spec.repo_path}"] = CANIDS.encode()
    models = tmp_path / "models"
    with serve(hub):
        path = download_tag_table(spec, models, endpoint=hub.url)
    assert path == models / DEFAULT_TAG_TABLE and read_tag_table(path).implied("wolf")[-1] == "mammal"
    assert (models / DEFAULT_TAG_TABLE).read_text() == CANIDS
    assert sorted(path.name for path in models.iterdir()) == [DEFAULT_TAG_TABLE]  # no staging folder left


def test_failed_download_leaves_no_table(tmp_path):
    spec = KNOWN_TAG_TABLES[DEFAULT_TAG_TABLE]
    models = tmp_path / "models"
    with serve(FakeHub()) as hub, pytest.raises(DownloadError, match="put jtp-3-hydra-tags.csv in .* by hand"):
        download_tag_table(spec, models, endpoint=hub.url)  # this hub has no such file
    assert not models.exists() or not any(models.iterdir())
