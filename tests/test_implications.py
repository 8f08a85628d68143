"""Implication modes of the JTP-3 release and the Hydra package on small hand-made graphs.

Every expected list is worked out by hand from JTP3_FACTS.md §8 (the reasoning is in the comments). Scores are
dyadic fractions (0.875, 0.625, …), exact in float32, so the lists can be written literally.
"""

from __future__ import annotations

import math

import pytest
import torch

from jtp_core.tags.implications import (
    HYDRA_MODES,
    JTP3_MODES,
    ExclusiveGroup,
    ImplicationGraph,
    excluded_mask,
    parse_exclusive_group,
    parse_exclusive_groups,
    parse_tag_exclusions,
    select_hydra,
    select_jtp3,
    subcategory,
)

INF = math.inf


def probs(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- the graph ---------------------------------------------------------------------------------------------------


def test_graph_chains_diamonds_cycles_and_outside_targets():
    tags = ["a", "b", "c", "d", "e", "x", "y"]
    graph = ImplicationGraph.from_edges(tags, {
        "a": ["b", "c"], "b": ["d"], "c": ["d"],  # a diamond
        "e": ["not_in_model"], "not_in_model": ["a"],  # a target and a source outside the model
        "x": ["y"], "y": ["x"],  # a cycle
    })
    assert [graph.consequents(i) for i in range(7)] == [(1, 2, 3), (3,), (3,), (), (), (6,), (5,)]
    assert [graph.antecedents(i) for i in range(7)] == [(), (0,), (0,), (0, 1, 2), (), (6,), (5,)]
    # 3 + 1 + 1 + 1 + 1 transitive pairs; only x↔y is mutual
    assert len(graph.antecedent) == 7
    assert graph.mutual.sum().item() == 2
    mask = torch.tensor([False, True, False, False, False, False, False])
    assert graph.implied_by(mask).nonzero().flatten().tolist() == [3]
    assert graph.implying(torch.tensor([False, False, False, True, False, False, False])).nonzero().flatten().tolist() \
        == [0, 1, 2]


# ---- a chain: the JTP-3 / Hydra difference -----------------------------------------------------------------------
# wolf → canine → mammal. canine's own threshold is very high, so only wolf passes on its own.
CHAIN = ImplicationGraph.from_edges(["canine", "mammal", "wolf"], {"wolf": ["canine"], "canine": ["mammal"]})
CHAIN_P = probs(0.375, 0.125, 0.875)
CHAIN_T = torch.tensor([0.9375, 0.5, 0.5])

JTP3_CHAIN = {
    "off": [(2, 0.875)],
    # inherit BEFORE the threshold: canine = mammal = 0.875; canine still misses its 0.9375, mammal passes
    "inherit": [(1, 0.875), (2, 0.875)],
    # constrain before the threshold: wolf = min(.875, .375, .125) = .125, canine = .125 → nothing passes
    "constrain": [],
    "remove": [(2, 0.875)],
    "constrain-remove": [],
}
HYDRA_CHAIN = {
    "off": [(2, 0.875)],
    # qualify: wolf passes, so everything it implies stays, with its own score
    "preserve": [(2, 0.875), (0, 0.375), (1, 0.125)],
    # decision first (all three stay), then the scores inherit wolf's 0.875; ties by name
    "inherit": [(0, 0.875), (1, 0.875), (2, 0.875)],
    # decision first, then every score is min over D(t): wolf is output with 0.125
    "constrain": [(0, 0.125), (1, 0.125), (2, 0.125)],
    # canine and mammal fail, and wolf implies them → all dropped
    "enforce": [],
    "enforce-inherit": [],
    "enforce-constrain": [],
    "enforce-remove": [],
    "remove": [(2, 0.875)],
    # K = {wolf}: nothing of D(wolf) is kept, so the score stays 0.875
    "constrain-remove": [(2, 0.875)],
}


@pytest.mark.parametrize("mode", JTP3_MODES)
def test_jtp3_chain(mode):
    assert select_jtp3(CHAIN_P, CHAIN_T, CHAIN, mode) == JTP3_CHAIN[mode]


@pytest.mark.parametrize("mode", HYDRA_MODES)
def test_hydra_chain(mode):
    assert select_hydra(CHAIN_P, CHAIN_T, CHAIN, mode) == HYDRA_CHAIN[mode]


# ---- a diamond: enforce drops antecedents --------------------------------------------------------------------------
# a → b, a → c, b → d, c → d; e implies a tag outside the model (ignored). θ = 0.5 for all; c fails.
DIAMOND = ImplicationGraph.from_edges(
    ["a", "b", "c", "d", "e"], {"a": ["b", "c"], "b": ["d"], "c": ["d"], "e": ["outside"]}
)
DIAMOND_P = probs(0.875, 0.75, 0.25, 0.625, 0.5)

HYDRA_DIAMOND = {
    # c fails: c and A(c) = {a} go; e passes at exactly 0.5 (>=)
    "enforce": [(1, 0.75), (3, 0.625), (4, 0.5)],
    "enforce-remove": [(1, 0.75), (4, 0.5)],  # D(b) = {d}
    "enforce-inherit": [(1, 0.75), (3, 0.75), (4, 0.5)],  # d = max(.625, b .75)
    "enforce-constrain": [(1, 0.625), (3, 0.625), (4, 0.5)],  # b = min(.75, d .625)
    # Q = {a, b, d, e}; D(Q) adds c below its threshold
    "preserve": [(0, 0.875), (1, 0.75), (3, 0.625), (4, 0.5), (2, 0.25)],
    # threshold {a, b, d, e}, then D(a) ∪ D(b) = {b, c, d} removed
    "remove": [(0, 0.875), (4, 0.5)],
    "off": [(0, 0.875), (1, 0.75), (3, 0.625), (4, 0.5)],
}
JTP3_DIAMOND = {
    # b, c, d all inherit a's 0.875 before the threshold, so c (0.25) is output too
    "inherit": [(0, 0.875), (1, 0.875), (2, 0.875), (3, 0.875), (4, 0.5)],
    # a = min(.875, .75, .25, .625) = .25; b = min(.75, .625) = .625; c = .25; d = .625; e = .5
    "constrain": [(1, 0.625), (3, 0.625), (4, 0.5)],
    "constrain-remove": [(1, 0.625), (4, 0.5)],
    "remove": [(0, 0.875), (4, 0.5)],
    "off": [(0, 0.875), (1, 0.75), (3, 0.625), (4, 0.5)],
}


@pytest.mark.parametrize("mode", sorted(HYDRA_DIAMOND))
def test_hydra_diamond(mode):
    assert select_hydra(DIAMOND_P, 0.5, DIAMOND, mode) == HYDRA_DIAMOND[mode]


@pytest.mark.parametrize("mode", sorted(JTP3_DIAMOND))
def test_jtp3_diamond(mode):
    assert select_jtp3(DIAMOND_P, 0.5, DIAMOND, mode) == JTP3_DIAMOND[mode]


# ---- qualify with θ = +inf, and a cycle ----------------------------------------------------------------------------
# x ↔ y (a cycle), y → z


CYCLE = ImplicationGraph.from_edges(["x", "y", "z"], {"x": ["y"], "y": ["x", "z"]})


def test_qualify_keeps_implied_tags_even_with_infinite_threshold():
    thresholds = torch.tensor([0.5, INF, INF])  # y and z could never pass on their own
    p = probs(0.75, 0.25, 0.125)
    assert select_hydra(p, thresholds, CYCLE, "preserve") == [(0, 0.75), (1, 0.25), (2, 0.125)]
    assert select_hydra(p, thresholds, CYCLE, "off") == [(0, 0.75)]
    # enforce: y and z fail → they and their antecedents (x, y) are dropped
    assert select_hydra(p, thresholds, CYCLE, "enforce") == []


def test_cycle_members_share_scores_and_never_remove_each_other():
    p = probs(0.75, 0.625, 0.5)
    # all pass; z is implied by x and y → removed; x and y imply each other → both stay
    assert select_hydra(p, 0.5, CYCLE, "remove") == [(0, 0.75), (1, 0.625)]
    assert select_jtp3(p, 0.5, CYCLE, "remove") == [(0, 0.75), (1, 0.625)]
    # inherit: every member of {x, y} implies z and each other → all 0.75
    assert select_hydra(p, 0.5, CYCLE, "inherit") == [(0, 0.75), (1, 0.75), (2, 0.75)]
    # constrain: x = min(.75, y .625, z .5) = .5, y = .5, z = .5 — all still pass at >= 0.5
    assert select_jtp3(p, 0.5, CYCLE, "constrain") == [(0, 0.5), (1, 0.5), (2, 0.5)]


# ---- exclusion ---------------------------------------------------------------------------------------------------


def test_exclusion_jtp3_inherits_from_an_excluded_tag_hydra_does_not():
    p = probs(0.25, 0.125, 0.875)  # canine, mammal, wolf
    excluded = torch.tensor([False, False, True])  # wolf's category is excluded
    # JTP-3: inherit runs on all tags first, then the threshold step drops wolf
    assert select_jtp3(p, 0.5, CHAIN, "inherit", excluded) == [(0, 0.875), (1, 0.875)]
    # Hydra: qualify keeps all three, exclusion drops wolf, then inherit over what is left: mammal ← canine
    assert select_hydra(p, 0.5, CHAIN, "inherit", excluded) == [(0, 0.25), (1, 0.25)]


def test_excluded_tags_remove_nothing():
    p = probs(0.625, 0.625, 0.875)  # canine passes on its own; mammal too
    excluded = torch.tensor([False, False, True])
    # wolf is excluded, so only canine removes: mammal goes
    assert select_jtp3(p, 0.5, CHAIN, "remove", excluded) == [(0, 0.625)]
    assert select_hydra(p, 0.5, CHAIN, "remove", excluded) == [(0, 0.625)]
    # without the exclusion wolf removes canine and mammal
    assert select_jtp3(p, 0.5, CHAIN, "remove") == [(2, 0.875)]


def test_subcategories():
    assert subcategory("safe", "meta") == "rating"
    assert subcategory("explicit", "meta") == "rating"
    assert subcategory("safe", "general") is None
    assert subcategory("blue_eyes", "general") == "color"
    assert subcategory("two_tone_fur", "general") == "color"
    assert subcategory("countershading", "general") == "color"
    assert subcategory("rainbow_hair", "general") == "color"
    assert subcategory("blue_background", "general") is None  # exception suffix
    assert subcategory("white_border", "general") is None
    assert subcategory("dark_room", "general") is None
    assert subcategory("tan_line", "general") is None
    assert subcategory("blue_eyes", "species") is None  # only general tags have colours
    assert subcategory("wolf", "general") is None


def test_excluded_mask():
    tags = ["safe", "blue_eyes", "wolf", "blue_background", "canine"]
    categories = ["meta", "general", "species", "general", "species"]
    assert excluded_mask(tags, categories, ["color", "species"]).tolist() == [False, True, True, False, True]
    assert excluded_mask(tags, categories, ["Rating"]).tolist() == [True, False, False, False, False]
    assert excluded_mask(tags, None, exclude_tags=["blue_background", "not_a_tag"]).tolist() == [
        False, False, False, True, False,
    ]
    with pytest.raises(ValueError, match="unknown categories to exclude: colour; known: general"):
        excluded_mask(tags, categories, ["colour"])


def test_parse_tag_exclusions():
    # DIAMOND: a → b, a → c, b → d, c → d
    def excluded(text):
        return [DIAMOND.tags[i] for i in parse_tag_exclusions(text, DIAMOND).nonzero().flatten().tolist()]

    assert excluded("b e") == ["b", "e"]  # whole words (the package would look up "" and "")
    assert excluded("~d") == ["a", "b", "c", "d"]  # d and everything implying it
    assert excluded("~~d") == ["a", "b", "c"]  # only what implies it
    assert excluded("~~b # a comment\nnot_a_tag e#x") == ["a"]  # 'e#x' is one (unknown) word
    assert excluded("~a ~~e") == ["a"]  # nothing implies a or e
    assert excluded("") == []


# ---- exclusive groups --------------------------------------------------------------------------------------------


def test_parse_exclusive_group():
    assert parse_exclusive_group("solo duo trio") == ExclusiveGroup(("solo", "duo", "trio"))
    assert parse_exclusive_group("female !male : cat dog") == ExclusiveGroup(("cat", "dog"), ("female",), ("male",))
    assert parse_exclusive_group("female: !male: cat dog dog") == ExclusiveGroup(
        ("cat", "dog"), ("female",), ("male",)
    )
    for bad, message in (("a: b", "at least two"), ("x: dog dog", "at least two"), ("! : a b", "empty '!'")):
        with pytest.raises(ValueError, match=message):
            parse_exclusive_group(bad)


def test_parse_exclusive_groups_file():
    text = "# groups\nsolo duo trio # by count\n\nfemale: a#b c\n"
    assert parse_exclusive_groups(text) == [
        ExclusiveGroup(("solo", "duo", "trio")),
        ExclusiveGroup(("a#b", "c"), ("female",)),  # '#' inside a word is not a comment
    ]
    with pytest.raises(ValueError, match=r"groups\.txt, line 3: an exclusive group needs at least two"):
        parse_exclusive_groups("solo duo\n\nlonely\n", source="groups.txt")


GROUP_TAGS = ["cat", "dog", "duo", "female", "male", "puppy", "solo", "trio"]
GROUPS_GRAPH = ImplicationGraph.from_edges(GROUP_TAGS, {"puppy": ["dog"]})
COUNT = parse_exclusive_group("solo duo trio")
PET = parse_exclusive_group("female !male : cat dog")


def group_probs(**overrides: float) -> torch.Tensor:
    values = {"cat": 0.75, "dog": 0.5, "duo": 0.625, "female": 0.875, "male": 0.375, "puppy": 0.625,
              "solo": 0.75, "trio": 0.25}
    values.update(overrides)
    return probs(*(values[tag] for tag in GROUP_TAGS))


def test_exclusive_groups_with_requirement_and_exception():
    # kept before groups: cat .75, dog .5, duo .625, female .875, puppy .625, solo .75 (male, trio fail)
    # COUNT: solo beats duo → duo goes. PET applies (female passes, male does not): cat beats dog → dog and
    # A(dog) = {puppy} go
    assert select_hydra(group_probs(), 0.5, GROUPS_GRAPH, "off", groups=[COUNT, PET]) == [
        (3, 0.875), (0, 0.75), (6, 0.75),
    ]
    # male passes → PET does not apply; ties (cat/solo, dog/male) by name
    assert select_hydra(group_probs(male=0.5), 0.5, GROUPS_GRAPH, "off", groups=[COUNT, PET]) == [
        (3, 0.875), (0, 0.75), (6, 0.75), (5, 0.625), (1, 0.5), (4, 0.5),
    ]
    # female fails → PET does not apply either
    assert select_hydra(group_probs(female=0.25), 0.5, GROUPS_GRAPH, "off", groups=[PET]) == [
        (0, 0.75), (6, 0.75), (2, 0.625), (5, 0.625), (1, 0.5),
    ]


def test_exclusive_group_tie_keeps_the_earlier_member_not_the_first_name():
    group = parse_exclusive_group("dog cat")
    p = group_probs(cat=0.625, dog=0.625, puppy=0.25)
    kept = [GROUP_TAGS[i] for i, _ in select_hydra(p, 0.5, GROUPS_GRAPH, "off", groups=[group])]
    assert kept == ["female", "solo", "dog", "duo"]  # cat (a tie with dog, later in the group) is gone


def test_exclusive_groups_under_qualify():
    # preserve: dog (0.25) stays only because puppy implies it; it is still a present member
    p = group_probs(dog=0.25, cat=0.375, puppy=0.625, duo=0.25)
    group = parse_exclusive_group("cat dog")  # cat fails its threshold: not kept, not a member here
    kept = select_hydra(p, 0.5, GROUPS_GRAPH, "preserve", groups=[group])
    assert kept == [(3, 0.875), (6, 0.75), (5, 0.625), (1, 0.25)]
    # a condition kept only by implication, below its own threshold, does not pass
    conditional = parse_exclusive_group("dog: solo female")
    kept = select_hydra(p, 0.5, GROUPS_GRAPH, "preserve", groups=[conditional])
    assert [GROUP_TAGS[i] for i, _ in kept] == ["female", "solo", "puppy", "dog"]
    # cat (0.875) now beats the implied dog: dog goes and so does puppy, which implies it
    p = group_probs(dog=0.25, cat=0.875, puppy=0.625, duo=0.25)
    kept = select_hydra(p, 0.5, GROUPS_GRAPH, "preserve", groups=[parse_exclusive_group("dog cat")])
    assert [GROUP_TAGS[i] for i, _ in kept] == ["cat", "female", "solo"]


def test_exclusive_group_unknown_names():
    # an unknown condition never passes (the group never applies); unknown members are skipped
    p = group_probs()
    assert select_hydra(p, 0.5, GROUPS_GRAPH, "off", groups=[parse_exclusive_group("nope: solo duo")]) \
        == select_hydra(p, 0.5, GROUPS_GRAPH, "off")
    kept = select_hydra(p, 0.5, GROUPS_GRAPH, "off", groups=[parse_exclusive_group("nope solo duo")])
    assert [GROUP_TAGS[i] for i, _ in kept] == ["female", "cat", "solo", "puppy", "dog"]


# ---- ordering, thresholds, errors ------------------------------------------------------------------------------


def test_ties_are_broken_by_name_not_index():
    graph = ImplicationGraph.from_edges(["zebra", "apple", "mango"], {})
    p = probs(0.5, 0.5, 0.75)
    assert select_hydra(p, 0.5, graph, "off") == [(2, 0.75), (1, 0.5), (0, 0.5)]
    assert select_jtp3(p, 0.5, graph, "off") == [(2, 0.75), (1, 0.5), (0, 0.5)]


def test_thresholds_compare_exactly_like_python_floats():
    graph = ImplicationGraph.from_edges(["a", "b"], {})
    # float32(0.6199) = 0.61989998…, below the CSV threshold 0.6199 (a Python float): not output, as in the
    # release; float32(0.4999) = 0.49990001… is above 0.4999
    p = probs(0.6199, 0.4999)
    assert select_jtp3(p, torch.tensor([0.6199, 0.4999], dtype=torch.float64), graph, "off") == [
        (1, 0.4999000132083893),
    ]
    # +inf thresholds (uncalibrated tags) never pass
    assert select_jtp3(probs(1.0, 1.0), torch.tensor([INF, 1.0]), graph, "off") == [(1, 1.0)]


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown implications mode 'enforce'; choose one of inherit"):
        select_jtp3(CHAIN_P, 0.5, CHAIN, "enforce")
    with pytest.raises(ValueError, match="unknown implications mode 'add'"):
        select_hydra(CHAIN_P, 0.5, CHAIN, "add")
    with pytest.raises(ValueError, match=r"probabilities of shape \[3\]"):
        select_hydra(probs(0.5, 0.5), 0.5, CHAIN, "off")
    with pytest.raises(ValueError, match=r"thresholds of shape \[3\]"):
        select_hydra(CHAIN_P, torch.tensor([0.5, 0.5]), CHAIN, "off")
    with pytest.raises(ValueError, match="exclusion mask"):
        select_jtp3(CHAIN_P, 0.5, CHAIN, "off", torch.tensor([0, 0, 1]))


def test_malformed_group_keeps_its_winner():
    # puppy implies dog, so dropping the loser dog with A(dog) would drop the winner puppy too; our decision:
    # the best member always stays (the package would leave no member at all)
    kept = select_hydra(group_probs(), 0.5, GROUPS_GRAPH, "off", groups=[parse_exclusive_group("dog puppy")])
    assert [GROUP_TAGS[i] for i, _ in kept] == ["female", "cat", "solo", "duo", "puppy"]
