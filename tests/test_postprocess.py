"""Every post-processing option, on a hand-made score vector."""

import pytest
import torch

from jtp_core import TagOptions, parse_tag_list, tag_result

TAGS = ["anthro", "female", "membrane_(anatomy)", "blue_eyes", "simple_background", "white_background", "hi_res"]
PROBS = torch.tensor([0.95, 0.90, 0.60, 0.40, 0.30, 0.2, 0.1])


def text(**options):
    return tag_result(PROBS, TAGS, TagOptions(**options)).text


def test_defaults_follow_the_reference_plus_escaping():
    # strict threshold: 0.2 itself is dropped
    assert text() == r"anthro, female, membrane \(anatomy\), blue eyes, simple background"


def test_threshold_is_strict():
    assert "white background" in text(threshold=0.19)
    assert "white background" not in text(threshold=0.2)


def test_max_tags_keeps_the_best_and_zero_means_no_limit():
    assert text(max_tags=2) == "anthro, female"
    assert text(max_tags=0, threshold=0.0).count(", ") == 6


def test_exclude_with_or_without_underscores_and_wildcards():
    assert text(exclude=("blue eyes", "*_background")) == r"anthro, female, membrane \(anatomy\)"
    assert text(exclude=("membrane_(anatomy)", "FEMALE")) == "anthro, blue eyes, simple background"
    assert text(exclude=(r"membrane \(anatomy\)",)) == "anthro, female, blue eyes, simple background"


def test_trigger_words_first_and_not_repeated():
    assert text(trigger_words=("mychar", "blue_eyes"), max_tags=4) == (
        r"mychar, blue_eyes, anthro, female, membrane \(anatomy\)"
    )


def test_underscores_and_escaping_can_be_turned_off():
    assert text(replace_underscores=False, escape_parentheses=False, max_tags=4) == (
        "anthro, female, membrane_(anatomy), blue_eyes"
    )


def test_weighted_form():
    assert text(weighted=True, max_tags=3) == r"(anthro:0.95), (female:0.90), (membrane \(anatomy\):0.60)"


def test_alphabetical_order_and_separator():
    expected = r"anthro,blue eyes,female,membrane \(anatomy\),simple background"
    assert text(order="alphabetical", separator=",") == expected


def test_scores_table_uses_e621_names_in_output_order():
    result = tag_result(PROBS, TAGS, TagOptions(max_tags=3))
    assert result.scores == {"anthro": 0.95, "female": 0.9, "membrane_(anatomy)": 0.6}


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="order"):
        TagOptions(order="random")
    with pytest.raises(ValueError, match="max_tags"):
        TagOptions(max_tags=-1)


def test_parse_tag_list():
    assert parse_tag_list(" a, b\nc ,, ") == ("a", "b", "c")
    assert parse_tag_list(None) == ()
