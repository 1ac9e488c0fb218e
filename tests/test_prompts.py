"""The one multiple-choice layout shared by instruction data, training and evaluation."""

import pytest

from deepsight.prompts import (
    answer_text,
    format_multiple_choice,
    letter_conflict,
    parse_option,
    region_answer_text,
)


def test_answer_text_is_the_letter_and_option_and_rejects_an_index_outside_the_options():
    assert answer_text(["chair", "table"], 1) == "B. table"
    with pytest.raises(ValueError, match="answer_index"):
        answer_text(["chair", "table"], -1)


def test_region_answer_is_the_letter_alone_and_parses_back_to_its_option():
    assert region_answer_text(["bed", "lamp"], 1) == "B"
    assert parse_option(region_answer_text(["bed", "lamp"], 0), ["bed", "lamp"]) == 0
    with pytest.raises(ValueError, match="answer_index"):
        region_answer_text(["bed", "lamp"], 2)


def test_format_multiple_choice_letters_every_option_in_order():
    prompt = format_multiple_choice("Which is farther?", ["chair", "table", "lamp"])
    assert prompt.splitlines()[:4] == ["Which is farther?", "A. chair", "B. table", "C. lamp"]


@pytest.mark.parametrize("output, expected", [
    ("B. table", 1), ("(C)", 2), ("A", 0), ("the table is farther", 1), ("2", 1),
    ("chair or table", None), ("no idea", None), ("E. sofa", None),
])
def test_parse_option_reads_letters_option_text_and_numbers_and_refuses_ambiguity(output, expected):
    assert parse_option(output, ["chair", "table", "lamp"]) == expected


@pytest.mark.parametrize("output, expected", [("coffee table", 1), ("table", 0), ("the coffee table.", 1)])
def test_parse_option_prefers_the_longer_option_that_contains_a_shorter_one(output, expected):
    assert parse_option(output, ["table", "coffee table", "sofa"]) == expected


@pytest.mark.parametrize("output, expected, conflict", [
    ("A. table", 1, True), ("B. table", 1, False), ("C. sofa", 2, False), ("A", 0, False), ("E. table", 1, True),
])
def test_option_text_outweighs_a_leading_letter_that_points_elsewhere_and_the_conflict_is_flagged(
    output, expected, conflict
):
    options = ["chair", "table", "lamp"]
    assert parse_option(output, options) == expected
    assert letter_conflict(output, options) == conflict
