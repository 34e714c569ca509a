"""Answer metrics on hand-made cases: RULER's string_match_all/part, SQuAD normalisation and F1."""

from __future__ import annotations

import pytest

from tasks.base import normalize
from tasks.metrics import NAMES, by_name, contains, exact, first_line, leading, string_match_all, string_match_part, token_f1


def test_string_match_all_is_the_fraction_of_references_found_case_insensitively() -> None:
    refs = ["ABCDE", "FGHIJ", "KLMNO", "PQRST"]
    assert string_match_all("abcde, fghij, klmno, pqrst", refs) == 1.0
    assert string_match_all("they are: ABCDE and KLMNO", refs) == 0.5
    assert string_match_all("VAR ABCDExyz", refs) == 0.25  # plain substring, as in RULER
    assert string_match_all("", refs) == 0.0
    assert string_match_all("anything", []) == 0.0


def test_string_match_part_is_any_reference() -> None:
    refs = ["1234567", "7654321"]
    assert string_match_part("The number is 7654321.", refs) == 1.0
    assert string_match_part("The number is 1234.", refs) == 0.0


def test_ruler_cleaning_turns_control_characters_into_separators() -> None:
    assert string_match_all("\x00abc\x01def\n", ["abc", "def"]) == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [("The Cat!", "cat"), ("  a  quick,  brown fox. ", "quick brown fox"), ("An apple", "apple"), ("Theatre", "theatre"), ("3.10", "310")],
)
def test_normalize_is_squad_style(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_token_f1_hand_computed() -> None:
    assert token_f1("imperative mood", ["imperative mood"]) == 1.0
    assert token_f1("The imperative mood.", ["imperative mood"]) == 1.0  # articles and punctuation dropped
    # pred {imperative, mood, always}, gold {imperative, mood}: P = 2/3, R = 1 -> F1 = 0.8
    assert token_f1("imperative mood always", ["imperative mood"]) == pytest.approx(0.8)
    # maximised over accepted answers
    assert token_f1("88 characters", ["88", "88 characters"]) == 1.0
    assert token_f1("may 2024", ["14 May 2024"]) == pytest.approx(2 * (1.0 * 2 / 3) / (1.0 + 2 / 3))
    assert token_f1("", ["x"]) == 0.0
    assert token_f1("something", ["x"]) == 0.0
    assert token_f1("", [""]) == 1.0  # SQuAD: two empty answers agree


def test_token_f1_counts_repeated_tokens_once_each() -> None:
    # pred "black black", gold "black": common = 1, P = 1/2, R = 1 -> 2/3
    assert token_f1("black black", ["black"]) == pytest.approx(2 / 3)


def test_contains_matches_whole_words_only() -> None:
    assert contains("It is Quell, I think.", ["quell"]) == 1.0
    assert contains("Quellam", ["Quell"]) == 0.0
    assert contains("The capital is New Brixham", ["new brixham"]) == 1.0
    assert contains("", ["x"]) == 0.0
    assert contains("anything", [""]) == 0.0


def test_exact_and_leading() -> None:
    assert exact(" Harbour. ", ["harbour"]) == 1.0
    assert exact("harbour branch", ["harbour"]) == 0.0
    assert leading(" 4821. zorvik: 1234", ["4821"]) == 1.0
    assert leading("value 4821", ["4821"]) == 0.0


def test_first_line_skips_leading_blank_lines() -> None:
    assert first_line("\n\n  black\nQuestion: next") == "black"
    assert first_line("") == ""


def test_by_name_covers_every_name() -> None:
    for name in NAMES:
        assert by_name(name)("alpha beta", ["alpha beta"]) == 1.0
