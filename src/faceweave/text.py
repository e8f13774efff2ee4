"""Captions <-> CelebA attributes, with no neural network.

* `captions_from_attributes` writes captions in the style of MM-CelebA-HQ, whose captions were
  themselves generated from CelebA attributes with templates ("The woman has wavy blond hair
  and wears earrings. She is smiling."): synonyms, several sentence plans, the pronoun set by
  Male, and only some of the attributes per caption, because real captions never list them all.
* `parse_prompt` reads which attributes a free-text prompt asks for ("a grinning man with a
  grey beard and spectacles" -> Male, Smiling, Gray_Hair, Eyeglasses = 1, No_Beard = 0), so a
  prompt can drive attribute-conditioned models and be checked against generated images.
* `describe_attributes` turns classifier outputs into one caption (`faceweave describe`).

Both directions share one vocabulary, kept as data: `ATTRIBUTE_PHRASES` (attribute -> value ->
words) and `HEADS` (the nouns that attribute words modify: "bushy" and "arched" both modify
eyebrows). Every phrase the writer may write is one the parser reads, so each caption parses
back to the attributes it mentions; the tests check that on thousands of random attribute sets.

Reading is deliberately shallow: lowercase word-boundary patterns, adjectives bound to the
nouns they modify, and negation ("no", "not", "without", "n't", ...) that flips every phrase
up to the next comma, "and", "with" or full stop.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable, Mapping

import numpy as np

from .conditions import canonical_attribute, check_prompt, validate_attributes
from .errors import FaceweaveError

__all__ = ["ATTRIBUTE_PHRASES", "HEADS", "Words", "Head", "captions_from_attributes",
           "parse_prompt", "describe_attributes"]


@dataclasses.dataclass(frozen=True)
class Words:
    """How one value of one attribute is said.

    slot  where the words go. For the writer: "subject" (the noun: man, woman), "state" (an
          adjective: "a young man", "he is young"), "has" (a noun phrase: "he has a goatee"),
          "wears" (an item: "she wears earrings"), a key of `HEADS` (a modifier of that noun:
          "bushy" for eyebrows), or "" for words that are only ever read.
    say   what the writer writes; the parser reads these as well. Plain lowercase text; an
          article ("a goatee") is written but optional when read; "{poss}" stands for
          his/her/their.
    read  more words the parser understands (inflections, rarer synonyms, other phrasings).

    A space or hyphen inside a phrase matches a space, a hyphen or nothing when read, so
    "clean-shaven" also reads "clean shaven" and "cleanshaven".
    """

    slot: str
    say: tuple[str, ...] = ()
    read: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Head:
    """A noun that attribute words modify, so "a big pointy nose" reads as Big_Nose and Pointy_Nose
    while "brown eyes" is not Brown_Hair.

    say        the nouns the writer uses ("a " marks a countable noun that takes an article)
    nouns      every form the parser binds modifiers to ("haired" as in "grey-haired")
    fillers    modifiers that name no attribute but may stand among those that do
               ("long black hair", "narrow blue eyes")
    postposed  modifiers may follow the noun without a verb ("with her mouth slightly open")
    """

    say: tuple[str, ...]
    nouns: tuple[str, ...]
    fillers: tuple[str, ...] = ()
    postposed: bool = False


# Degree words that may stand before any modifier ("very pale skin", "quite bushy eyebrows").
_INTENSIFIERS = ("very", "quite", "rather", "fairly", "somewhat", "really", "extremely", "a bit",
                 "a little", "slightly")
_COLOURS = ("black", "brown", "dark brown", "blond", "blonde", "gray", "grey", "white", "red",
            "dark", "light")

HEADS: dict[str, Head] = {
    "hair": Head(
        say=("hair",),
        nouns=("hair", "haired", "locks", "hairstyle", "hairdo", "bangs", "fringe", "curls",
               "beard", "bearded", "mustache", "moustache", "goatee", "stubble", "sideburns"),
        fillers=("long", "short", "shoulder-length", "medium-length", "cropped", "thick", "thin",
                 "fine", "messy", "neat", "tousled", "slicked-back", "shiny", "glossy", "dyed",
                 "dark", "light", "red", "auburn", "ginger", "copper", "pink", "blue", "purple")),
    "brows": Head(
        say=("eyebrows", "brows"),
        nouns=("eyebrows", "eyebrow", "brows", "brow", "browed"),
        fillers=_COLOURS + ("fair", "neat", "groomed", "well-groomed", "straight", "natural",
                            "strong")),
    "eyes": Head(
        say=("eyes",),
        nouns=("eyes", "eye", "eyed"),
        fillers=_COLOURS + ("blue", "green", "hazel", "amber", "bright", "pale", "almond-shaped",
                            "deep-set", "sparkling", "kind", "piercing")),
    "nose": Head(
        say=("a nose",),
        nouns=("nose", "nosed"),
        fillers=("straight", "crooked", "thin", "narrow", "upturned", "turned-up", "snub", "roman")),
    "lips": Head(
        say=("lips",),
        nouns=("lips", "lipped"),
        fillers=("pink", "soft", "dark", "pale"),
        postposed=True),
    "mouth": Head(
        say=("a mouth",),
        nouns=("mouth", "mouthed"),
        fillers=("wide", "small", "big", "large"),
        postposed=True),
    "skin": Head(
        say=("skin", "a complexion"),
        nouns=("skin", "skinned", "complexion"),
        fillers=("light", "very light", "smooth", "clear", "soft", "freckled", "fresh")),
    "cheeks": Head(say=("cheeks",), nouns=("cheeks", "cheek", "cheeked"), fillers=("soft", "smooth")),
    "cheekbones": Head(say=("cheekbones",), nouns=("cheekbones", "cheekbone", "cheek bones")),
    "face": Head(
        say=("a face",),
        nouns=("face", "faced"),
        fillers=("long", "narrow", "square", "heart-shaped", "angular", "wide", "broad", "small",
                 "diamond-shaped")),
    "chin": Head(
        say=("a chin",),
        nouns=("chin", "chinned", "chins"),
        fillers=("pointed", "pointy", "small", "strong", "square", "round", "cleft", "weak")),
    "hairline": Head(say=("a hairline",), nouns=("hairline",), fillers=("high", "low")),
}

# attribute -> value -> the words for it. Table order is the order the writer considers them.
ATTRIBUTE_PHRASES: dict[str, dict[int, tuple[Words, ...]]] = {
    "Male": {
        1: (Words("subject", say=("man", "gentleman", "guy"),
                  read=("men", "male", "males", "guys", "gentlemen", "boy", "boys", "he", "him",
                        "his", "himself", "husband", "father", "dad", "grandfather", "grandpa",
                        "mr", "sir")),),
        0: (Words("subject", say=("woman", "lady"),
                  read=("women", "female", "females", "ladies", "girl", "girls", "gal", "she",
                        "her", "hers", "herself", "wife", "mother", "mom", "grandmother",
                        "grandma", "mrs", "ms", "madam")),),
    },
    "Young": {
        1: (Words("state", say=("young", "youthful"),
                  read=("younger", "teen", "teens", "teenage", "teenager", "adolescent", "kid",
                        "child", "boy", "boys", "girl", "girls")),),
        0: (Words("state", say=("older", "middle-aged", "mature"),
                  read=("old", "elderly", "senior", "aging", "ageing", "wrinkled", "wrinkles",
                        "grandfather", "grandpa", "grandmother", "grandma")),),
    },
    "Smiling": {
        1: (Words("state", say=("smiling", "grinning", "beaming"),
                  read=("smile", "smiles", "smiled", "smiley", "grin", "grins", "grinned",
                        "beams", "laugh", "laughs", "laughing", "happy", "cheerful")),),
        0: (Words("", read=("unsmiling", "frown", "frowns", "frowning", "serious", "stern",
                            "expressionless", "neutral expression", "straight face",
                            "straight-faced", "sad", "grumpy", "pouting")),),
    },
    "Eyeglasses": {
        1: (Words("wears", say=("eyeglasses", "glasses", "spectacles"),
                  read=("specs", "sunglasses", "eye glasses", "reading glasses", "eyewear")),
            Words("state", say=("bespectacled",))),
    },
    "Wearing_Hat": {
        1: (Words("wears", say=("a hat", "a cap"),
                  read=("hats", "caps", "beanie", "beanies", "beret", "berets", "fedora",
                        "bonnet", "headwear", "helmet")),),
        0: (Words("", read=("hatless", "bareheaded")),),
    },
    "Wearing_Earrings": {
        1: (Words("wears", say=("earrings",), read=("earring", "ear rings", "ear ring", "ear studs",
                                                    "hoops")),),
    },
    "Wearing_Necklace": {
        1: (Words("wears", say=("a necklace",), read=("necklaces", "pendant", "choker")),),
    },
    "Wearing_Necktie": {
        1: (Words("wears", say=("a necktie", "a tie"),
                  read=("neckties", "ties", "bow tie", "bowtie", "cravat")),),
    },
    "Wearing_Lipstick": {
        1: (Words("wears", say=("lipstick",),
                  read=("lip stick", "lip gloss", "lip color", "lip colour")),
            Words("lips", read=("red", "painted", "glossy", "rouged"))),
    },
    "Heavy_Makeup": {
        1: (Words("wears", say=("heavy makeup", "a lot of makeup", "heavy make-up"),
                  read=("make-up", "lots of make-up", "full make-up", "dramatic make-up",
                        "bold make-up", "thick make-up", "heavily made up")),),
        0: (Words("", read=("light make-up", "subtle make-up", "minimal make-up",
                            "natural make-up", "little make-up", "make-up free", "bare-faced")),),
    },
    "Bald": {
        1: (Words("state", say=("bald",),
                  read=("hairless", "shaved head", "shaven head", "skinhead")),),
    },
    "Receding_Hairline": {
        1: (Words("hairline", say=("receding",), read=("thinning", "retreating")),
            Words("hair", read=("thinning",)),
            Words("", read=("balding",))),
    },
    "Bangs": {
        1: (Words("has", say=("bangs", "a fringe"), read=("fringes",)),),
    },
    "Wavy_Hair": {
        1: (Words("hair", say=("wavy", "curly"), read=("wavey", "curled", "frizzy", "permed")),
            Words("", read=("curls", "ringlets"))),
    },
    "Straight_Hair": {
        1: (Words("hair", say=("straight", "sleek")),),
    },
    "Black_Hair": {
        1: (Words("hair", say=("black", "jet-black"), read=("raven", "ebony")),
            Words("state", say=("black-haired",))),
    },
    "Blond_Hair": {
        1: (Words("hair", say=("blond", "blonde", "golden"),
                  read=("fair", "flaxen", "platinum", "honey", "sandy")),
            Words("state", say=("blond", "blonde", "fair-haired"), read=("blondes", "blondie"))),
    },
    "Brown_Hair": {
        1: (Words("hair", say=("brown", "chestnut"), read=("brunette", "mousy", "mousey")),
            Words("state", say=("brunette", "brown-haired"), read=("brunettes",))),
    },
    "Gray_Hair": {
        1: (Words("hair", say=("gray", "grey", "silver", "white"),
                  read=("silvery", "graying", "greying", "grizzled", "salt-and-pepper")),
            Words("state", say=("gray-haired", "grey-haired", "silver-haired", "white-haired"))),
    },
    "No_Beard": {
        1: (Words("state", say=("clean-shaven",), read=("beardless", "clean-shaved")),),
        0: (Words("has", say=("a beard", "a full beard"), read=("beards", "bearded")),),
    },
    "Mustache": {
        1: (Words("has", say=("a mustache", "a moustache"),
                  read=("mustaches", "moustaches", "mustached", "moustached", "mustachioed")),),
    },
    "Goatee": {
        1: (Words("has", say=("a goatee",), read=("goatees", "goateed")),),
    },
    "Sideburns": {
        1: (Words("has", say=("sideburns", "long sideburns"),
                  read=("side-burns", "side-burn", "mutton chops")),),
    },
    "5_o_Clock_Shadow": {
        1: (Words("has", say=("a five o'clock shadow", "stubble", "a 5 o'clock shadow"),
                  read=("stubbly", "unshaven", "scruff")),),
    },
    "Bushy_Eyebrows": {
        1: (Words("brows", say=("bushy", "thick"),
                  read=("heavy", "dense", "shaggy", "full", "unruly")),),
        0: (Words("brows", read=("thin", "sparse", "pencil-thin", "plucked")),),
    },
    "Arched_Eyebrows": {
        1: (Words("brows", say=("arched", "high-arched"), read=("curved", "peaked")),),
    },
    "Narrow_Eyes": {
        1: (Words("eyes", say=("narrow",),
                  read=("narrowed", "squinty", "slitted", "small", "half-closed", "sleepy")),
            Words("", read=("squint", "squints", "squinting"))),
        0: (Words("eyes", read=("wide", "big", "large", "wide-open", "round")),),
    },
    "Bags_Under_Eyes": {
        1: (Words("has", say=("bags under {poss} eyes",),
                  read=("eye bags", "under-eye bags", "dark circles", "baggy eyes",
                        "puffy eyes")),),
    },
    "Big_Nose": {
        1: (Words("nose", say=("big", "large"),
                  read=("prominent", "huge", "long", "wide", "broad", "bulbous", "hooked")),),
        0: (Words("nose", read=("small", "little", "tiny", "button", "petite")),),
    },
    "Pointy_Nose": {
        1: (Words("nose", say=("pointy", "pointed"), read=("sharp", "aquiline")),),
    },
    "Big_Lips": {
        1: (Words("lips", say=("big", "full"),
                  read=("thick", "plump", "large", "fleshy", "pouty", "luscious")),),
        0: (Words("lips", read=("thin",)),),
    },
    "Mouth_Slightly_Open": {
        1: (Words("mouth", say=("slightly open",),
                  read=("open", "opened", "partly open", "half-open", "ajar", "agape")),
            Words("lips", say=("slightly parted",), read=("parted", "apart")),
            Words("has", say=("{poss} mouth slightly open",))),
        0: (Words("mouth", read=("closed", "shut")),
            Words("lips", read=("closed", "sealed", "pressed together"))),
    },
    "Pale_Skin": {
        1: (Words("skin", say=("pale", "fair"), read=("porcelain", "pallid")),
            Words("face", read=("pale",)),
            Words("state", say=("pale-skinned", "fair-skinned"))),
        0: (Words("skin", read=("dark", "darker", "tan", "tanned", "brown", "olive", "medium",
                                "black", "dusky", "bronzed", "deep")),),
    },
    "Rosy_Cheeks": {
        1: (Words("cheeks", say=("rosy",), read=("pink", "red", "ruddy", "flushed", "blushing")),
            Words("state", say=("rosy-cheeked",))),
    },
    "Chubby": {
        1: (Words("state", say=("chubby", "plump"),
                  read=("fat", "overweight", "heavy-set", "chunky", "stout", "portly", "rotund")),
            Words("cheeks", read=("chubby", "plump", "full", "round")),
            Words("face", read=("chubby", "round", "plump", "full", "fat", "puffy"))),
        0: (Words("", read=("slim", "skinny", "slender", "thin")),
            Words("face", read=("thin", "slim", "gaunt")),
            Words("cheeks", read=("hollow", "sunken", "gaunt"))),
    },
    "Oval_Face": {
        1: (Words("face", say=("oval", "oval-shaped"), read=("egg-shaped", "elongated")),
            Words("state", say=("oval-faced",))),
    },
    "High_Cheekbones": {
        1: (Words("cheekbones", say=("high", "prominent"),
                  read=("pronounced", "defined", "well-defined", "sharp", "chiseled", "chiselled",
                        "strong")),),
        0: (Words("cheekbones", read=("low", "flat")),),
    },
    "Double_Chin": {
        1: (Words("chin", say=("double",)), Words("state", say=("double-chinned",))),
    },
    "Attractive": {
        1: (Words("", read=("attractive", "beautiful", "handsome", "good-looking", "gorgeous",
                            "lovely")),),
        0: (Words("", read=("unattractive", "ugly", "homely")),),
    },
    "Blurry": {
        1: (Words("", read=("blurry", "blurred", "out of focus")),),
    },
}

# Phrases that contain an attribute word without meaning it; reading them hides that word.
NOT_ATTRIBUTES = ("years old", "year old", "months old", "old-fashioned")

# How readily the writer mentions an attribute value, relative to an ordinary positive one
# (weight 1). Defaults: 1 when the value has words to say, else never. Low weights keep
# negatives and the unremarkable values rare, as in real captions.
MENTION_WEIGHT: dict[tuple[str, int], float] = {
    ("Young", 1): 0.7, ("Young", 0): 0.35, ("No_Beard", 1): 0.3,
    ("Smiling", 0): 0.15, ("Eyeglasses", 0): 0.1, ("Wearing_Hat", 0): 0.08,
}
# Values the writer may say by negating the other value's words ("she is not smiling",
# "without glasses", "he has no beard"); at most one per caption.
NEGATED_MENTIONS = frozenset({("Smiling", 0), ("Eyeglasses", 0), ("Wearing_Hat", 0),
                              ("No_Beard", 1)})
# Values worth saying only about some people ("clean-shaven" is news about a man, not a woman).
MENTION_ONLY_IF: dict[tuple[str, int], tuple[str, int]] = {("No_Beard", 1): ("Male", 1)}
# A bald head has no hair colour, texture or fringe worth describing.
HIDDEN_WHEN_BALD = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Wavy_Hair",
                    "Straight_Hair", "Bangs", "Receding_Hairline")
# Attributes one caption names at most one of (random attribute sets may set several).
EXCLUSIVE = (("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"), ("Wavy_Hair", "Straight_Hair"))

PRONOUNS = {1: ("he", "his"), 0: ("she", "her"), None: ("they", "their")}
NEUTRAL_NOUN = "person"
HAT_STYLES = {"beanie": "a beanie", "cap": "a cap", "brimmed": "a brimmed hat"}
GARMENTS = ("shirt", "sweater", "jacket")

# Sentence plans. The first sentence names the subject; the rest use the pronoun.
OPENINGS = {
    "with": ("{a} {subject} with {items}", "this is {a} {subject} with {items}",
             "a photo of {a} {subject} with {items}", "a portrait of {a} {subject} with {items}"),
    "has": ("the {subject} has {items}", "this {subject} has {items}"),
    "wears": ("the {subject} wears {items}", "this {subject} is wearing {items}"),
    "is": ("the {subject} is {items}", "this {subject} is {items}"),
    "bare": ("{a} {subject}", "a photo of {a} {subject}", "a close-up of {a} {subject}"),
}
FOLLOW_UPS = {
    "is": ("{p} is {x}",),
    "has": ("{p} has {x}", "{p} also has {x}"),
    "wears": ("{p} wears {x}", "{p} is wearing {x}"),
    "has+wears": ("{p} has {x} and wears {y}",),
    "hair": ("{poss} hair is {x}",),
    "not state": ("{p} is not {x}", "{p} isn't {x}"),
    "not has": ("{p} has no {bare}", "{p} doesn't have {x}"),
    "not wears": ("{p} doesn't wear {x}", "{p} is not wearing {x}", "{p} wears no {bare}"),
}
_PLURAL_VERBS = {"is": "are", "has": "have", "wears": "wear", "isn't": "aren't", "doesn't": "don't"}

MAX_MENTIONS = 7
_TABLE_ORDER = {name: i for i, name in enumerate(ATTRIBUTE_PHRASES)}


# ----------------------------------------------------------------------------- reading

_SEP = r"[\s-]*"
_POSSESSIVE = r"(?:(?P<poss>his|her|their|the|its)\s+)?"   # renamed poss{i} per phrase
_RUN_SEP = r"(?:\s*,\s*|\s+(?:and|or)\s+|[\s-]+)"
_COPULA = r"(?:is|are|was|were|looks?|appears?|seems?)(?:n't|\s+not)?"
_NEGATOR = re.compile(r"\b(?:no|not|without|never|nor|cannot|lacks?|lacking)\b|n't\b")
_SCOPE_END = re.compile(r"[,.;:!?()]|\b(?:and|but|with|while|who|which|that|whereas|although|"
                        r"though|yet)\b")


def _pattern(phrase: str) -> str:
    """A table phrase as a regex: article optional, any space/hyphen/nothing between words.

    A leading "{poss}" is dropped (the pronoun before "mouth slightly open" is read on its own).
    """
    tokens = [t for t in re.split(r"[\s-]+", phrase.strip()) if t]
    while len(tokens) > 1 and tokens[0] in ("a", "an", "{poss}"):
        tokens = tokens[1:]
    return _SEP.join(_POSSESSIVE if t == "{poss}" else re.escape(t).replace("'", "'?")
                     for t in tokens)


def _groups(ordered: list[str], indices) -> str:
    """Alternation with one named group p{i} per pattern (its possessive named poss{i})."""
    return "|".join(f"(?P<p{i}>{ordered[i].replace('?P<poss>', f'?P<poss{i}>')})" for i in indices)


def _add(table: dict[str, dict[str, int]], pattern: str, attribute: str, value: int) -> None:
    meaning = table.setdefault(pattern, {})
    if meaning.get(attribute, value) != value:
        raise ValueError(f"text vocabulary: {pattern!r} means both {attribute}=0 and =1")
    meaning[attribute] = value


@dataclasses.dataclass(frozen=True)
class _Grammar:
    phrases: dict[str, re.Pattern]   # standalone phrases, by their first letter
    meanings: list[dict[str, int]]   # group p{i} -> what it means
    possessives: dict[str, dict[str, int]]  # "her" -> {"Male": 0}, read inside "under her eyes"
    with_possessive: frozenset[str]  # the groups p{i} whose phrase has a possessive inside
    runs: dict[str, tuple[re.Pattern, re.Pattern, list[dict[str, int]]]]  # head -> run, modifier


@functools.lru_cache(maxsize=1)
def _grammar() -> _Grammar:
    """Compile the vocabulary tables into regexes (once, on first use).

    Alternatives are ordered longest first, so the longest phrase at a position wins;
    standalone phrases are split by first letter, which makes reading ~20x faster than
    one alternation of every phrase.
    """
    standalone: dict[str, dict[str, int]] = {_pattern(p): {} for p in NOT_ATTRIBUTES}
    modifiers: dict[str, dict[str, dict[str, int]]] = {
        head: {_pattern(p): {} for p in spec.fillers + _INTENSIFIERS} for head, spec in HEADS.items()}
    for attribute, by_value in ATTRIBUTE_PHRASES.items():
        for value, entries in by_value.items():
            for words in entries:
                table = modifiers[words.slot] if words.slot in HEADS else standalone
                for phrase in words.say + words.read:
                    _add(table, _pattern(phrase), attribute, value)

    ordered = sorted(standalone, key=len, reverse=True)
    by_letter: dict[str, list[int]] = {}
    for i, pattern in enumerate(ordered):
        by_letter.setdefault(pattern[0], []).append(i)
    phrases = {letter: re.compile(rf"(?:{_groups(ordered, indices)})\b")
               for letter, indices in by_letter.items()}
    with_possessive = frozenset(f"p{i}" for i, p in enumerate(ordered) if "?P<poss>" in p)
    possessives = {word: standalone.get(word, {}) for word in ("his", "her", "their", "the", "its")}

    runs = {}
    for head, spec in HEADS.items():
        mods = sorted(modifiers[head], key=len, reverse=True)
        any_mod = "|".join(mods)
        run = rf"(?:{any_mod})\b(?:{_RUN_SEP}(?:{any_mod})\b)*"
        nouns = "|".join(sorted((_pattern(n) for n in spec.nouns), key=len, reverse=True))
        copula = rf"(?:{_COPULA}\s+)?" if spec.postposed else rf"{_COPULA}\s+"
        run_re = re.compile(rf"\b(?P<run>{run})[\s-]+(?:{nouns})\b"
                            rf"|\b(?:{nouns})(?:\s+(?:which|that))?\s+{copula}(?P<after>{run})")
        mod_re = re.compile(rf"\b(?:{_groups(mods, range(len(mods)))})\b")
        runs[head] = (run_re, mod_re, [modifiers[head][m] for m in mods])
    return _Grammar(phrases, [standalone[p] for p in ordered], possessives, with_possessive, runs)


@dataclasses.dataclass(frozen=True)
class _Reading:
    start: int
    end: int
    bound: bool                                  # modifiers bound to a noun win ties
    meanings: tuple[tuple[int, dict[str, int]], ...]  # (position, attributes) inside the span


def _readings(text: str) -> list[_Reading]:
    """Every phrase and modifier run in `text`, overlaps resolved: leftmost, then longest,
    then bound to a noun wins ("plump lips" is Big_Lips, not Chubby)."""
    grammar = _grammar()
    found = []
    for word in re.finditer(r"\b\w", text):
        pattern = grammar.phrases.get(word.group())
        m = pattern.match(text, word.start()) if pattern else None
        if m is None:
            continue
        group = m.lastgroup
        meanings = [(m.start(), grammar.meanings[int(group[1:])])]
        if group in grammar.with_possessive and m.group("poss" + group[1:]):
            possessive = "poss" + group[1:]
            meanings.append((m.start(possessive), grammar.possessives[m.group(possessive)]))
        found.append(_Reading(m.start(), m.end(), False, tuple(meanings)))
    for run_re, mod_re, mod_meanings in grammar.runs.values():
        for m in run_re.finditer(text):
            group = "run" if m.group("run") is not None else "after"
            start, end = m.span(group)
            mods = tuple((start + mod.start(), mod_meanings[int(mod.lastgroup[1:])])
                         for mod in mod_re.finditer(m.group(group)))
            found.append(_Reading(start, end, True, mods))
    found.sort(key=lambda r: (r.start, -(r.end - r.start), not r.bound))
    kept, end = [], -1
    for reading in found:
        if reading.start >= end:
            kept.append(reading)
            end = reading.end
    return kept


def _negated_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _NEGATOR.finditer(text):
        stop = _SCOPE_END.search(text, m.end())
        spans.append((m.end(), stop.start() if stop else len(text)))
    return spans


def parse_prompt(text: str) -> dict[str, int]:
    """The CelebA attributes a free-text prompt asks for, as {name: 0/1}.

    Only attributes the text mentions are returned ("a face" -> {}). Negation flips a phrase
    ("without glasses" -> Eyeglasses 0, "no beard" -> No_Beard 1). When the text contradicts
    itself the first mention wins: the subject is usually described before anything else.
    """
    if not isinstance(text, str):
        raise FaceweaveError(f"a prompt must be text, got {type(text).__name__}")
    check_prompt(text)          # the one prompt cap: this parser's cost grows faster than the text
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    negated = _negated_spans(text)
    out: dict[str, int] = {}
    for reading in _readings(text):
        for position, meaning in reading.meanings:
            flip = any(a <= position < b for a, b in negated)
            for attribute, value in meaning.items():
                out.setdefault(attribute, 1 - value if flip else value)
    return out


# ----------------------------------------------------------------------------- writing

@dataclasses.dataclass(frozen=True)
class _Mention:
    """Something a caption may say: an attribute value (or, attribute None, an extra fact)."""
    attribute: str | None
    value: int
    weight: float
    words: tuple[Words, ...]     # direct ways to say it
    negatable: bool = False      # may also be said by negating the other value's words
    extra: bool = False          # a fact from `extras`: said after the attribute modifiers


def _pick(rng: np.random.Generator, options):
    """A random option, the first (the plainest word) half the time, as real captions do."""
    options = list(options)
    if len(options) == 1 or rng.random() < 0.5:
        return options[0]
    return options[int(rng.integers(1, len(options)))]


def _choice(rng: np.random.Generator, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _join(items: list[str], rng: np.random.Generator) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    last = ", and " if rng.random() < 0.3 else " and "
    return ", ".join(items[:-1]) + last + items[-1]


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def _strip_article(phrase: str) -> str:
    return re.sub(r"^(?:a|an) ", "", phrase)


@functools.lru_cache(maxsize=4096)
def _meaning(phrase: str) -> tuple[tuple[str, int], ...]:
    """parse_prompt of a writer's phrase, cached: the writer asks about the same few phrases
    for every caption of every sample."""
    return tuple(parse_prompt(phrase).items())


def _implies(phrase: str, attributes: Mapping[str, int]) -> dict[str, int] | None:
    """What `phrase` reads as, or None when that contradicts (or goes beyond) `attributes`."""
    meaning = dict(_meaning(phrase))
    return meaning if all(attributes.get(k) == v for k, v in meaning.items()) else None


def _is_modifier(head: str, words: str) -> bool:
    """Whether the parser binds `words` to the head's noun, so that putting them among other
    modifiers ("narrow hazel eyes") cannot hide those."""
    return bool(_grammar().runs[head][0].fullmatch(f"{words} {HEADS[head].nouns[0]}"))


def _is_plain(words: str) -> bool:
    """Words with no grammar of their own (no negation, no clause break) that are safe to insert."""
    return bool(re.fullmatch(r"[a-z]+(?:[ -][a-z]+)*", words)) and not (
        _NEGATOR.search(words) or _SCOPE_END.search(words))


@functools.lru_cache(maxsize=None)
def _sayable(attribute: str, value: int) -> tuple:
    """The phrases the writer may use for one attribute value (the table never changes)."""
    return tuple(w for w in ATTRIBUTE_PHRASES[attribute].get(value, ()) if w.say and w.slot)


def _mentions(attributes: dict[str, int], extras: Mapping[str, str], rng: np.random.Generator,
              exclusive_pick: Callable[[list[str]], str] | None = None) -> list[_Mention]:
    """Everything the caption could say about this person, with how readily to say it."""
    hidden = set(HIDDEN_WHEN_BALD) if attributes.get("Bald") == 1 else set()
    for group in EXCLUSIVE:   # keep one of several positive hair colours (or textures)
        positive = [a for a in group if attributes.get(a) == 1]
        if len(positive) > 1:
            keep = exclusive_pick(positive) if exclusive_pick else _choice(rng, positive)
            hidden.update(a for a in positive if a != keep)
    hair_colour = extras.get("hair_color")
    hair_colour_meaning = (_implies(f"{hair_colour} hair", attributes)
                           if hair_colour and _is_modifier("hair", hair_colour) else None)
    out = []
    for attribute, by_value in ATTRIBUTE_PHRASES.items():
        value = attributes.get(attribute)
        if attribute == "Male" or value is None or attribute in hidden:
            continue
        condition = MENTION_ONLY_IF.get((attribute, value))
        if condition and attributes.get(condition[0]) != condition[1]:
            continue
        words = _sayable(attribute, value)
        if hair_colour_meaning == {attribute: 1}:       # "platinum blond", "white", "dark brown"
            words += (Words("hair", say=(hair_colour,)),)
        if attribute == "Wearing_Hat" and value == 1 and extras.get("hat_style"):
            hat = HAT_STYLES.get(extras["hat_style"], f"a {extras['hat_style']}")
            if _is_plain(hat) and _implies(hat, attributes) == {"Wearing_Hat": 1}:
                words += (Words("wears", say=(hat,)),)
        negatable = (attribute, value) in NEGATED_MENTIONS
        weight = MENTION_WEIGHT.get((attribute, value), 1.0 if words else 0.0)
        if weight > 0 and (words or negatable):
            out.append(_Mention(attribute, value, weight, words, negatable))
    out += _extra_mentions(attributes, extras, hair_colour_meaning)
    return out


def _extra_mentions(attributes: dict[str, int], extras: Mapping[str, str],
                    hair_colour_meaning: dict[str, int] | None) -> list[_Mention]:
    """Facts CelebA has no name for (red hair, blue eyes, a navy sweater), said only when the
    words agree with the attributes ("dark skin" reads as Pale_Skin 0)."""
    facts = []
    no_colour = not any(attributes.get(a) == 1 for a in EXCLUSIVE[0])
    if hair_colour_meaning == {} and no_colour and attributes.get("Bald") != 1:
        facts.append(Words("hair", say=(extras["hair_color"],)))
    eyes = extras.get("eye_color")
    if eyes and _is_modifier("eyes", eyes) and _implies(f"{eyes} eyes", attributes) is not None:
        facts.append(Words("eyes", say=(eyes,)))
    tone = extras.get("skin_tone")
    if (tone and attributes.get("Pale_Skin") != 1 and _is_modifier("skin", tone)
            and _implies(f"{tone} skin", attributes) is not None):
        facts.append(Words("skin", say=(tone,)))
    cloth = extras.get("cloth_color")
    if cloth and _is_plain(cloth):
        garments = tuple(f"a {cloth} {g}" for g in GARMENTS)
        if all(_implies(g, attributes) == {} for g in garments):
            facts.append(Words("wears", say=garments))
    return [_Mention(None, 1, 0.3, (w,), extra=True) for w in facts]


def _select(mentions: list[_Mention], rng: np.random.Generator) -> list[_Mention]:
    """A random subset: each kept with probability keep * weight, at least a few, at most
    MAX_MENTIONS, so captions differ in what they leave out."""
    keep = rng.uniform(0.45, 0.85)
    chosen = [m for m in mentions if rng.random() < keep * m.weight]
    # Only one negation per caption, so only one value that has nothing else to say for it.
    negation_only = [m for m in chosen if not m.words]
    chosen = [m for m in chosen if m.words] + negation_only[:1]
    rest = [m for m in mentions if m not in chosen and m.words]
    rest.sort(key=lambda m: (m.extra, -m.weight * rng.random()))  # attributes before extras
    while sum(not m.extra for m in chosen) < min(3, sum(not m.extra for m in mentions)) and rest:
        chosen.append(rest.pop(0))
    if len(chosen) > MAX_MENTIONS:
        chosen = [chosen[i] for i in sorted(rng.permutation(len(chosen))[:MAX_MENTIONS])]
    return chosen


@dataclasses.dataclass
class _Parts:
    """The words of one caption before they are put into sentences."""
    states: list[str] = dataclasses.field(default_factory=list)
    items: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # ("has"|"wears", np)
    hair_is: str | None = None                   # "wavy and blond": "Her hair is wavy and blond."
    negative: tuple[str, str] | None = None      # (slot, phrase) to say with not/no/without


def _noun_phrase(head: str, mods: list[str], rng: np.random.Generator) -> str:
    noun = _pick(rng, HEADS[head].say)
    # "bushy and arched eyebrows" reads well; "sleek and dark brown hair" does not.
    pairs = (" ", ", ") if head == "hair" else (" ", ", ", " and ")
    separator = _choice(rng, pairs) if len(mods) == 2 else ", "
    described = separator.join(mods)
    if noun.startswith("a "):
        return f"{_article(described)} {described} {noun[2:]}"
    return f"{described} {noun}"


def _realise(chosen: list[_Mention], possessive: str, rng: np.random.Generator,
             allow_negative: bool = True) -> _Parts:
    """Choose words for each mention: a synonym, and how (state, item, modifier, negation)."""
    parts = _Parts()
    chosen = sorted(chosen, key=lambda m: _TABLE_ORDER.get(m.attribute, len(_TABLE_ORDER)))
    modifiers: dict[str, tuple[list[str], list[str]]] = {}   # head -> (attribute, extra) words
    for mention in chosen:
        negate = mention.negatable and parts.negative is None and allow_negative and (
            not mention.words or rng.random() < 0.5)
        if negate:
            # The plainest way to say the opposite: "not smiling", "no beard", "without glasses".
            words = next(w for w in ATTRIBUTE_PHRASES[mention.attribute][1 - mention.value]
                         if w.say and w.slot in ("state", "has", "wears"))
            parts.negative = (words.slot, _pick(rng, words.say).replace("{poss}", possessive))
            continue
        if not mention.words:
            continue
        words = _choice(rng, mention.words)
        phrase = _pick(rng, words.say).replace("{poss}", possessive)
        if words.slot in HEADS:
            modifiers.setdefault(words.slot, ([], []))[mention.extra].append(phrase)
        elif words.slot == "state":
            parts.states.append(phrase)
        else:
            parts.items.append((words.slot, phrase))
    for head, (own, extra) in modifiers.items():
        if len(own) == 2 and rng.random() < 0.3:   # mostly table order: "wavy blond hair"
            own.reverse()
        mods = own + extra
        if head == "hair" and rng.random() < 0.25:
            parts.hair_is = " and ".join(mods)
        else:
            parts.items.append(("has", _noun_phrase(head, mods, rng)))
    return parts


def _conjugate(template: str, plural: bool) -> str:
    if not plural:
        return template
    return re.sub(r"(\{p\}(?: also)?|and) (is|has|wears|isn't|doesn't)\b",
                  lambda m: f"{m.group(1)} {_PLURAL_VERBS[m.group(2)]}", template)


def _sentence(template: str, fields: dict[str, str], plural: bool) -> str:
    text = _conjugate(template, plural).format(**fields)
    return text[:1].upper() + text[1:] + "."


def _compose(parts: _Parts, noun: str, pronoun: str, possessive: str,
             rng: np.random.Generator) -> str:
    """Put the words into sentences: an opening that names the subject, then pronoun sentences
    in a random order."""
    states = [parts.states[i] for i in rng.permutation(len(parts.states))]
    items = [parts.items[i] for i in rng.permutation(len(parts.items))]
    has = [p for kind, p in items if kind == "has"]
    wears = [p for kind, p in items if kind == "wears"]
    plans = ["with"] * bool(items) + ["has"] * bool(has) + ["wears"] * bool(wears) + ["is"] * bool(states)
    plan = _choice(rng, plans) if plans else "bare"
    negative = parts.negative
    if plan == "is":
        subject, opening_items, states = noun, states, []
    else:
        n_before = int(rng.integers(0, min(2, len(states)) + 1))
        subject, states = " ".join(states[:n_before] + [noun]), states[n_before:]
        pool = {"with": items, "has": [("has", p) for p in has],
                "wears": [("wears", p) for p in wears], "bare": []}[plan]
        taken = pool[:int(rng.integers(1, min(3, len(pool)) + 1))] if pool else []
        opening_items = [p for _, p in taken]
        has = [p for p in has if ("has", p) not in taken]
        wears = [p for p in wears if ("wears", p) not in taken]
    opening = _choice(rng, OPENINGS[plan]).format(
        a=_article(subject), subject=subject, items=_join(opening_items, rng))
    if plan == "with" and negative and negative[0] != "state" and rng.random() < 0.5:
        opening += _choice(rng, (f", without {negative[1]}", f" and no {_strip_article(negative[1])}"))
        negative = None
    sentences = [opening[:1].upper() + opening[1:] + "."]

    plural = pronoun == "they"
    fields = {"p": pronoun, "poss": possessive}
    rest = []
    if states:
        rest.append(_sentence(FOLLOW_UPS["is"][0], {**fields, "x": _join(states, rng)}, plural))
    if has and wears and rng.random() < 0.3:
        rest.append(_sentence(FOLLOW_UPS["has+wears"][0], {
            **fields, "x": _join(has[:2], rng), "y": _join(wears[:2], rng)}, plural))
        has, wears = has[2:], wears[2:]
    for kind, phrases in (("has", has), ("wears", wears)):
        for i in range(0, len(phrases), 3):
            # "She also has ..." once, and only after an opening that listed some features.
            also = kind == "has" and i == 0 and plan in ("has", "with")
            template = _choice(rng, FOLLOW_UPS[kind]) if also or kind == "wears" else FOLLOW_UPS[kind][0]
            rest.append(_sentence(template, {**fields, "x": _join(phrases[i:i + 3], rng)}, plural))
    if parts.hair_is:
        rest.append(_sentence(FOLLOW_UPS["hair"][0], {**fields, "x": parts.hair_is}, plural))
    if negative:
        slot, phrase = negative
        template = _choice(rng, FOLLOW_UPS[f"not {slot}"])
        rest.append(_sentence(template, {**fields, "x": phrase, "bare": _strip_article(phrase)},
                              plural))
    return " ".join(sentences + [rest[i] for i in rng.permutation(len(rest))])


def _caption(attributes: dict[str, int], extras: Mapping[str, str], rng: np.random.Generator,
             keep_all: bool = False,
             exclusive_pick: Callable[[list[str]], str] | None = None) -> str:
    gender = attributes.get("Male")
    if gender is not None and not keep_all and rng.random() < 0.1:
        gender = None          # "A young smiling person with ...": the caption leaves sex out
    pronoun, possessive = PRONOUNS[gender]
    noun = NEUTRAL_NOUN if gender is None else _pick(
        rng, ATTRIBUTE_PHRASES["Male"][gender][0].say)
    mentions = _mentions(attributes, extras, rng, exclusive_pick)
    if keep_all:
        chosen = [m for m in mentions if m.words and not m.extra]
    else:
        chosen = _select(mentions, rng)
    parts = _realise(chosen, possessive, rng, allow_negative=not keep_all)
    return _compose(parts, noun, pronoun, possessive, rng)


def captions_from_attributes(attributes: Mapping[str, int], rng: np.random.Generator, n: int = 5,
                             extras: Mapping[str, str] | None = None) -> list[str]:
    """`n` captions of one face, MM-CelebA-HQ style, distinct whenever the attributes allow.

    attributes  CelebA names -> 0/1; only what is given is ever said (a missing Male gives a
                neutral "person"). Values 1 are mentioned, a few 0s where the negative reads
                naturally ("she is not smiling", "he has no beard"), each caption a random subset.
    rng         the only source of randomness: the same generator state gives the same captions.
    extras      optional facts CelebA has no name for, from the renderer: hair_color,
                eye_color, skin_tone, hat_style, cloth_color. Each is said only when its words
                agree with `attributes`.

    Every caption parses back (`parse_prompt`) to values that agree with `attributes`.
    """
    attributes = validate_attributes(attributes)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise FaceweaveError(f"n must be a positive number of captions, got {n!r}")
    extras = {str(k): str(v).strip().lower() for k, v in (extras or {}).items() if v is not None}
    captions: list[str] = []
    for _ in range(10 * n):            # a face with little to say may not have n distinct ones
        caption = _caption(attributes, extras, rng)
        if caption not in captions:
            captions.append(caption)
            if len(captions) == n:
                return captions
    return [captions[i % len(captions)] for i in range(n)]


def describe_attributes(attributes: Mapping[str, float]) -> str:
    """One caption naming every attribute predicted present (probability >= 0.5, or 1).

    Deterministic: the same input gives the same sentence. Of several hair colours (or
    textures) predicted together, the most probable one is named.
    """
    probabilities = {canonical_attribute(k): float(v) for k, v in attributes.items()}
    bad = {k: p for k, p in probabilities.items() if not 0.0 <= p <= 1.0}   # NaN included
    if bad:
        raise FaceweaveError(f"attribute probabilities must lie in 0..1, got {bad}")
    binary = {k: int(p >= 0.5) for k, p in probabilities.items()}
    rng = np.random.default_rng(0)
    return _caption(binary, {}, rng, keep_all=True,
                    exclusive_pick=lambda names: max(names, key=probabilities.__getitem__))
