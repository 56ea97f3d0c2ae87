"""Keyword blocklist, normalisation and the WordNet-file lemmatiser (offline; invented tokens only)."""

from __future__ import annotations

import zipfile

import better_profanity
import nltk
import pytest
from guardrail_support import WORDNET_LEMMAS, WORDNET_VERBS, write_fake_wordnet

from guardrails.text.blocklist import BlocklistChecker, builtin_words, tokenize
from guardrails.text.lemmatize import NounLemmatizer, WordNetError, find_wordnet
from guardrails.text.normalize import normalize_for_matching, normalize_unicode, to_ascii
from guardrails.text.wordlists import WordListError, read_word_file, read_word_folder

WORDS = ["zorblax", "quuxfang", "snarp dregg", "knife", "glorp"]


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory):
    return NounLemmatizer.from_wordnet(write_fake_wordnet(tmp_path_factory.mktemp("nltk_data")))


@pytest.fixture(scope="module")
def checker(wordnet):
    return BlocklistChecker(
        WORDS, whitelist=["zorbla"], exact_match=["very bad phrase", "Grimble  Snoot"], lemmatizer=wordnet
    )


# -- normalisation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("ｚｏｒｂｌａｘ", "zorblax"),  # full-width
        ("zórblax", "zorblax"),  # accent dropped
        ("zor\u200bblax", "zorblax"),  # zero-width space removed
        ("zor\u00adblax", "zorblax"),  # soft hyphen removed
        ("zor\x00blax", "zorblax"),  # NUL (our sentinel) removed
        ("  a \t b\n\nc  ", "a b c"),
        ("ﬁne", "fine"),  # ligature
    ],
)
def test_normalize_unicode(raw, expected):
    assert normalize_unicode(raw) == expected


def test_to_ascii_blanks_other_scripts():
    assert to_ascii("robot Привет cat") == "robot cat"
    assert normalize_for_matching("猫 zorblax 犬") == "zorblax"


# -- word lists -------------------------------------------------------------------------------------
def test_word_files(tmp_path):
    (tmp_path / "a").write_text("\ufeffzorblax\n\n  quuxfang  \n# a comment\nzorblax\n", encoding="utf-8")
    (tmp_path / ".hidden").write_text("ignored\n")
    (tmp_path / "b.txt").write_text("glorp\n")
    assert read_word_file(tmp_path / "a") == ["zorblax", "quuxfang", "zorblax"]
    assert read_word_folder(tmp_path) == ["zorblax", "quuxfang", "glorp"]
    assert read_word_folder(tmp_path / "missing") == []
    (tmp_path / "bad").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(WordListError, match="bad"):
        read_word_folder(tmp_path)


# -- blocklist hits and misses ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt, kind",
    [
        ("a zorblax walks into a bar", "raw"),
        ("ZORBLAX!", "raw"),
        ("Look: zorblax, then more.", "raw"),
        ("z0rbl@x on a table", "raw"),  # leetspeak
        ("zorb lax", "raw"),  # split word re-joined
        ("ｚｏｒｂｌａｘ", "raw"),
        ("quux\u200bfang", "raw"),
        ("snarp dregg", "raw"),  # multi-word entry
        ("two zorblaxes.", "lemmatised"),  # plural via WordNet rules
        ("Zorblaxes, everywhere!", "lemmatised"),  # plural with punctuation and capital
        ("three knives", "lemmatised"),  # irregular plural via noun.exc
        ("**zorblax** in bold", "lemmatised"),  # Markdown emphasis around a listed word
        ("snarp dreggs", "lemmatised"),  # plural of a multi-word entry
        ("glorps", "lemmatised"),  # plural WordNet does not know: blocklist-aware candidate
        ("this is a Very Bad Phrase.", "exact"),
        ("grimble snoot", "exact"),  # entry whitespace normalised
    ],
)
def test_blocklist_hits(checker, prompt, kind):
    match = checker.find(prompt)
    assert match is not None and match.kind == kind, (prompt, match)
    result = checker.check(prompt)
    assert result.status == "block" and kind in result.detail


@pytest.mark.parametrize(
    "prompt",
    [
        "a robot walks through a sunny park",
        "a **bold** robot",  # asterisks alone never block (reference defect)
        "*",
        "***",
        "5 * 3 = 15",
        "rate it *****",
        "the zorbla is whitelisted",
        "a desk in a room",
        "very bad phrases",  # exact entries need whole words; fuzzy 0.4 only matches identical windows
        "",
        "   ",
        "猫",
    ],
)
def test_blocklist_misses(checker, prompt):
    assert checker.find(prompt) is None, prompt
    assert checker.check(prompt).status == "pass"


def test_fuzzy_threshold_is_configurable():
    loose = BlocklistChecker(["zorblax"], exact_match=["badword"], partial_match_letter_count=1.0)
    strict = BlocklistChecker(["zorblax"], exact_match=["badword"], partial_match_letter_count=0.4)
    assert loose.find("two badword,") is not None  # exact \b match
    assert loose.find("a badw0rd") .kind == "fuzzy"  # one substitution: ratio 6/7 >= 6/7
    assert strict.find("a badw0rd") is None
    assert loose.find("badwords") is not None and loose.find("badwords").kind == "fuzzy"


def test_own_profanity_instance_leaves_the_global_one_alone():
    before = list(better_profanity.profanity.CENSOR_WORDSET)
    BlocklistChecker(["zorblax"], whitelist=["zorbla"])
    after = better_profanity.profanity.CENSOR_WORDSET
    assert len(after) == len(before) and all(a is b for a, b in zip(after, before))
    assert not better_profanity.profanity.contains_profanity("zorblax")


def test_custom_list_replaces_builtin_list():
    only_custom = BlocklistChecker(["zorblax"])
    builtin = builtin_words()
    assert len(builtin) > 500
    assert only_custom.find(builtin[0]) is None  # the built-in list is not silently added
    with pytest.raises(ValueError, match="empty"):
        BlocklistChecker([" ", ""])


def test_tokenize_strips_punctuation_and_asterisks():
    assert tokenize("Hello, **World**! It's 5*3.") == ["hello", "world", "it", "s", "5*3"]


# -- lemmatiser -------------------------------------------------------------------------------------
def test_wordnet_reader(wordnet):
    assert wordnet.has_dictionary
    assert [
        wordnet.lemmatize(w) for w in ("knives", "women", "guns", "glasses", "churches", "flies", "mice", "lenses")
    ] == ["knife", "woman", "gun", "glass", "church", "fly", "mouse", "lens"]
    assert wordnet.lemmatize("cats") == "cats"  # not in the (fake) index → unchanged
    assert wordnet.lemmatize("foos") == "baz"  # duplicate exception keys: last line wins, as in NLTK


def test_wordnet_parity_with_nltk(tmp_path, monkeypatch):
    """Same answers as nltk's WordNetLemmatizer on the same files (nltk reads them, offline)."""
    from nltk.stem import WordNetLemmatizer

    root = tmp_path / "nltk_data"
    write_fake_wordnet(root)
    monkeypatch.setattr(nltk.data, "path", [str(root)])
    ours = NounLemmatizer.from_wordnet(root / "corpora" / "wordnet")
    theirs = WordNetLemmatizer()
    words = ["knives", "women", "guns", "glasses", "boxes", "churches", "flies", "zorblaxes", "mice", "buses",
             "lenses", "cats", "foos", "gun", "s", "ies", "xes", "lens", "quuxfangs", "stripes", "spices", "spaces",
             "heroines", "assess", "shelves", "terrorists", "hives", "ganges", "fates", "penetrates", "milfs"]
    words += list(WORDNET_LEMMAS) + list(WORDNET_VERBS)
    assert [ours.lemmatize(w) for w in words] == [theirs.lemmatize(w) for w in words]


def test_wordnet_zip_and_symlink(tmp_path):
    wn = write_fake_wordnet(tmp_path / "plain")
    archive = tmp_path / "zipped" / "corpora" / "wordnet.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for f in wn.iterdir():
            zf.write(f, f"wordnet/{f.name}")
    assert find_wordnet(tmp_path / "zipped") == archive
    assert NounLemmatizer.from_wordnet(archive).lemmatize("knives") == "knife"
    linked = tmp_path / "linked" / "corpora"
    linked.mkdir(parents=True)
    (linked / "wordnet").symlink_to(wn, target_is_directory=True)  # NLTK >= 3.10.3 refuses this; we don't
    assert NounLemmatizer.from_wordnet(find_wordnet(tmp_path / "linked")).lemmatize("women") == "woman"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.noun").write_text("knife n 1 0\n")
    with pytest.raises(WordNetError, match="noun.exc"):
        NounLemmatizer.from_wordnet(tmp_path / "broken")
    assert find_wordnet(tmp_path / "nothing") is None


def test_data_free_fallback():
    rules = NounLemmatizer.rules_only()
    assert not rules.has_dictionary
    known = {"knife", "zorblax", "glass", "child"}
    assert rules.lemmatize("knives", known) == "knife"
    assert rules.lemmatize("zorblaxes", known) == "zorblax"
    assert rules.lemmatize("glasses", known) == "glass"
    assert rules.lemmatize("children", known) == "child"
    assert rules.lemmatize("cats", known) == "cats"  # unknown words are kept as they are
    checker = BlocklistChecker(["zorblax", "knife"])  # no WordNet given → fallback
    assert checker.lemmatizer.source.startswith("rules")
    assert checker.find("Two KNIVES.").kind == "lemmatised"
    assert checker.find("zorblaxes!").kind == "lemmatised"


# -- false positives of the blocklist-aware lemmatiser (better_profanity's built-in list) ----------
# Benign words and phrases that contain, or look like an inflection of, a built-in list word ("len",
# "asses", "strip", "spic", "spac", "heroin", "erect", "niggle", "penetrate", "cumming", "gang", "hiv",
# "fat", "jap", "spik", "wad", ...). Found by running the lemmatiser over an English word list (wamerican)
# with the built-in list, against real WordNet 3.0 and without WordNet. The reference (NLTK's
# WordNetLemmatizer, then the same matching) blocks none of them.
BENIGN = [
    "a close-up through a camera lens",
    "assess the damage",
    "a zebra with black stripes",
    "a shelf of spices",
    "parking spaces",
    "heroines",
    "two camera lenses",
    "shelves full of spices",
    "sunlight penetrates the canopy",
    "a crane erects a steel beam",
    "small niggles",
    "poems by e. e. cummings",
    "the fates",
    "the river ganges",
    "bee hives",
    "playful japes",
    "spikes on a fence",
    "a heron wades through the reeds",
    "she menstruates",
]
# Listed words in inflected or obfuscated form that must still be caught (both with and without WordNet).
BLOCKED = [
    "terrorists",
    "TERRORISTS!",
    "two ｔｅｒｒｏｒｉｓｔｓ",  # full-width
    "térrorists",  # accents
    "tërrörists",
    "terror\u200bists",  # zero-width space
    "bastards",  # WordNet knows it: its answer is a listed word
    "bástards",
    "heroins",  # while "heroines" passes
    "milfs",  # unknown to WordNet: blocklist-aware fallback
    "ｍｉｌｆｓ",
]


@pytest.fixture(scope="module", params=["wordnet", "no wordnet"])
def builtin_checker(request, wordnet):
    lemmatizer = wordnet if request.param == "wordnet" else NounLemmatizer.rules_only()
    return BlocklistChecker(builtin_words() + ["terrorist"], lemmatizer=lemmatizer)


@pytest.mark.parametrize("prompt", BENIGN)
def test_builtin_list_benign_words(builtin_checker, prompt):
    assert builtin_checker.find(prompt) is None, (prompt, builtin_checker.lemmatized_text(prompt))


@pytest.mark.parametrize("prompt", BLOCKED)
def test_builtin_list_inflected_words_blocked(builtin_checker, prompt):
    match = builtin_checker.find(prompt)
    assert match is not None and match.kind == "lemmatised", (prompt, match)


def test_wordnet_answer_wins_over_blocklist_candidates(wordnet):
    known = {"len", "asses", "strip", "spic", "spac", "heroin", "penetrate", "terrorist", "milf"}
    # WordNet knows these words (noun lookup, or as a verb): its answer is used even when a rule output is listed
    assert [wordnet.lemmatize(w, known) for w in ("lens", "stripes", "spices", "spaces", "heroines")] == [
        "lens", "stripe", "spice", "space", "heroine"
    ]
    assert wordnet.knows("assess") and wordnet.lemmatize("assess", known) == "assess"
    assert wordnet.knows("penetrates") and wordnet.lemmatize("penetrates", known) == "penetrates"
    assert wordnet.lemmatize("terrorists", known) == "terrorist"
    # unknown to WordNet: the blocklist-aware fallback
    assert not wordnet.knows("milfs") and wordnet.lemmatize("milfs", known) == "milf"
    assert wordnet.lemmatize("milfs") == "milfs"  # plain lookup (NLTK's answer)


def test_fallback_takes_only_regular_plurals():
    rules = NounLemmatizer.rules_only()
    known = {"len", "asses", "strip", "spic", "spac", "heroin", "terrorist", "zorblax", "glorp", "bastard"}
    assert rules.fallback_candidates("stripes") == ["stripe"]  # no es→"" rule
    assert rules.fallback_candidates("assess") == []  # a word ending in "ss" is no plural
    for word in ("stripes", "spices", "spaces", "heroines", "assess", "lens"):
        assert rules.lemmatize(word, known) == word
    assert [rules.lemmatize(w, known) for w in ("terrorists", "heroins", "zorblaxes", "glorps", "bastards")] == [
        "terrorist", "heroin", "zorblax", "glorp", "bastard"
    ]
