"""Captions <-> attributes: the parser on hand-written prompts, the writer on random attribute
sets (every caption must parse back to what it was written from), and the vocabulary table."""
import numpy as np
import pytest

from faceweave.conditions import CELEBA_ATTRIBUTES
from faceweave.errors import FaceweaveError
from faceweave.text import (ATTRIBUTE_PHRASES, HEADS, captions_from_attributes,
                            describe_attributes, parse_prompt)

PROMPTS = {
    # the paraphrases the writer must understand
    "a grinning man with a grey beard and spectacles":
        {"Male": 1, "Smiling": 1, "Gray_Hair": 1, "Eyeglasses": 1, "No_Beard": 0},
    "a woman without glasses, not smiling": {"Male": 0, "Eyeglasses": 0, "Smiling": 0},
    "an old bald guy": {"Male": 1, "Young": 0, "Bald": 1},
    "young lady with red lipstick and a necklace":
        {"Male": 0, "Young": 1, "Wearing_Lipstick": 1, "Wearing_Necklace": 1},
    "clean-shaven": {"No_Beard": 1},
    "beard": {"No_Beard": 0},
    "bearded": {"No_Beard": 0},
    "a face": {},
    "The woman has wavy blond hair and wears earrings. She is smiling.":
        {"Male": 0, "Wavy_Hair": 1, "Blond_Hair": 1, "Wearing_Earrings": 1, "Smiling": 1},
    "This man has a goatee, bushy eyebrows and a big nose. He wears eyeglasses.":
        {"Male": 1, "Goatee": 1, "Bushy_Eyebrows": 1, "Big_Nose": 1, "Eyeglasses": 1},
    "A young smiling person with straight black hair and bangs.":
        {"Young": 1, "Smiling": 1, "Straight_Hair": 1, "Black_Hair": 1, "Bangs": 1},
    # pronouns
    "she wears a hat": {"Male": 0, "Wearing_Hat": 1},
    "his eyebrows are arched": {"Male": 1, "Arched_Eyebrows": 1},
    "bags under her eyes": {"Male": 0, "Bags_Under_Eyes": 1},
    # negation: scope ends at a comma, "and", "with" or a full stop
    "He has no beard and wears a cap.": {"Male": 1, "No_Beard": 1, "Wearing_Hat": 1},
    "she doesn't have a mustache or sideburns": {"Male": 0, "Mustache": 0, "Sideburns": 0},
    "a man who isn't smiling, with glasses": {"Male": 1, "Smiling": 0, "Eyeglasses": 1},
    "her hair is not wavy": {"Male": 0, "Wavy_Hair": 0},
    "not clean-shaven": {"No_Beard": 0},
    "no makeup": {"Heavy_Makeup": 0},
    "a man without a hat and with earrings": {"Male": 1, "Wearing_Hat": 0, "Wearing_Earrings": 1},
    # synonyms and inflections
    "she smiles": {"Male": 0, "Smiling": 1},
    "a frowning gentleman in specs": {"Smiling": 0, "Male": 1, "Eyeglasses": 1},
    "brunette girl with a fringe": {"Brown_Hair": 1, "Male": 0, "Young": 1, "Bangs": 1},
    "a blonde with silver earrings": {"Blond_Hair": 1, "Wearing_Earrings": 1},
    "salt-and-pepper hair and a moustache": {"Gray_Hair": 1, "Mustache": 1},
    "a five o'clock shadow": {"5_o_Clock_Shadow": 1},
    "elderly woman in a beanie": {"Young": 0, "Male": 0, "Wearing_Hat": 1},
    "with her mouth slightly open": {"Male": 0, "Mouth_Slightly_Open": 1},
    "fair skin, rosy cheeks and high cheekbones":
        {"Pale_Skin": 1, "Rosy_Cheeks": 1, "High_Cheekbones": 1},
    "a big pointy nose and full lips": {"Big_Nose": 1, "Pointy_Nose": 1, "Big_Lips": 1},
    "a chubby man with a double chin": {"Chubby": 1, "Male": 1, "Double_Chin": 1},
    "heavily made up, with lots of make-up": {"Heavy_Makeup": 1},
    "light makeup and a receding hairline": {"Heavy_Makeup": 0, "Receding_Hairline": 1},
    "a squinting man": {"Narrow_Eyes": 1, "Male": 1},
    # words bound to the wrong noun mean nothing: brown eyes are not brown hair
    "a woman with brown eyes, dark skin and a black shirt": {"Male": 0, "Pale_Skin": 0},
    "a 20 years old man": {"Male": 1},
    "plump lips": {"Big_Lips": 1},
    "A TEENAGE BOY": {"Young": 1, "Male": 1},
}


@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_parse_prompt(prompt):
    assert parse_prompt(prompt) == PROMPTS[prompt]


def test_contradictions_keep_the_first_mention():
    assert parse_prompt("a woman; he is smiling")["Male"] == 0


def random_attributes(rng):
    """Random attribute sets, from sparse to dense, contradictions included (bald with bangs)."""
    p = rng.uniform(0.1, 0.6)
    return {name: int(rng.random() < p) for name in CELEBA_ATTRIBUTES}


EXTRAS = {"hair_color": ["red", "auburn", "black", "platinum blond", "white", "dark brown"],
          "eye_color": ["blue", "brown", "green", "gray", "hazel"],
          "skin_tone": ["very light", "light", "medium", "tan", "brown", "dark"],
          "hat_style": ["beanie", "cap", "brimmed"],
          "cloth_color": ["red", "navy", "gray", "black", "beige"]}

SAYABLE = {name for name, by_value in ATTRIBUTE_PHRASES.items()
           if name != "Male" and any(w.say for w in by_value.get(1, ()))}


def test_round_trip_on_random_attribute_sets():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        attributes = random_attributes(rng)
        extras = {k: v[rng.integers(len(v))] for k, v in EXTRAS.items()} if rng.random() < 0.5 else None
        for caption in captions_from_attributes(attributes, rng, n=2, extras=extras):
            parsed = parse_prompt(caption)
            wrong = {k: v for k, v in parsed.items() if attributes[k] != v}
            assert not wrong, (caption, wrong)
            if sum(attributes[a] for a in SAYABLE) >= 4:
                assert len(parsed) >= 3, caption


def test_captions_never_name_an_absent_attribute():
    rng = np.random.default_rng(1)
    for male in (0, 1):
        nothing = {name: 0 for name in CELEBA_ATTRIBUTES} | {"Male": male, "No_Beard": 1}
        for caption in captions_from_attributes(nothing, rng, n=20):
            said = {k for k, v in parse_prompt(caption).items() if v == 1}
            assert said <= {"Male", "No_Beard"}, caption
    for name in sorted(SAYABLE):
        one = {n: 0 for n in CELEBA_ATTRIBUTES} | {name: 1, "Male": 1, "Young": 1}
        for caption in captions_from_attributes(one, rng, n=3):
            said = {k for k, v in parse_prompt(caption).items() if v == 1}
            assert said <= {name, "Male", "Young"}, caption


def test_deterministic_given_the_generator():
    attributes = {"Male": 0, "Smiling": 1, "Wavy_Hair": 1, "Blond_Hair": 1, "Wearing_Earrings": 1}
    first = captions_from_attributes(attributes, np.random.default_rng(7), n=5)
    again = captions_from_attributes(attributes, np.random.default_rng(7), n=5)
    other = captions_from_attributes(attributes, np.random.default_rng(8), n=5)
    assert first == again
    assert first != other


def test_captions_vary():
    rng = np.random.default_rng(2)
    distinct = [len(set(captions_from_attributes(random_attributes(rng), rng, n=5)))
                for _ in range(200)]
    assert np.mean([d == 5 for d in distinct]) > 0.95
    assert len(set(captions_from_attributes({}, rng, n=3))) == 3   # nothing known, still varied


def test_pronoun_follows_male():
    rng = np.random.default_rng(3)
    men = " ".join(captions_from_attributes({"Male": 1, "Goatee": 1, "Eyeglasses": 1, "Smiling": 1},
                                            rng, n=30)).lower().split()
    women = " ".join(captions_from_attributes({"Male": 0, "Bangs": 1, "Wearing_Hat": 1, "Smiling": 1},
                                              rng, n=30)).lower().split()
    assert "he" in men and "she" not in men and "her" not in men
    assert "she" in women and "he" not in women and "his" not in women


def test_extras_are_said_only_when_they_agree():
    rng = np.random.default_rng(4)
    redhead = {"Male": 0, "Black_Hair": 0, "Blond_Hair": 0, "Brown_Hair": 0, "Gray_Hair": 0,
               "Wearing_Hat": 1}
    extras = {"hair_color": "red", "hat_style": "beanie", "eye_color": "green"}
    text = " ".join(captions_from_attributes(redhead, rng, n=40, extras=extras))
    assert "red hair" in text or "hair is red" in text
    assert "beanie" in text and "green eyes" in text
    # black hair contradicts Black_Hair = 0; a negation smuggled into an extra is not said
    extras = {"hair_color": "black", "eye_color": "no", "cloth_color": "not red"}
    for caption in captions_from_attributes(redhead, rng, n=40, extras=extras):
        assert "black" not in caption and " no " not in caption and "not red" not in caption


def test_describe_attributes():
    probabilities = {"Male": 0.9, "Smiling": 0.8, "Black_Hair": 0.6, "Brown_Hair": 0.7,
                     "Eyeglasses": 0.2, "Goatee": 0.55, "Young": 0.3}
    caption = describe_attributes(probabilities)
    assert caption == describe_attributes(dict(probabilities))
    parsed = parse_prompt(caption)
    assert parsed["Male"] == 1 and parsed["Smiling"] == 1 and parsed["Goatee"] == 1
    assert parsed.get("Brown_Hair") == 1 and "Black_Hair" not in parsed   # the likelier colour
    assert parsed.get("Eyeglasses") != 1
    assert parse_prompt(describe_attributes({"Male": 0, "Wearing_Lipstick": 1})) == {
        "Male": 0, "Wearing_Lipstick": 1}


def test_every_written_phrase_reads_as_its_attribute():
    for name, by_value in ATTRIBUTE_PHRASES.items():
        for value, entries in by_value.items():
            for words in entries:
                for phrase in words.say:
                    if words.slot in HEADS:
                        noun = HEADS[words.slot].say[0].removeprefix("a ")
                        text = f"{phrase} {noun}"
                    else:
                        text = phrase.replace("{poss}", "the")
                    assert parse_prompt(text).get(name) == value, (name, text)


def test_bad_input_is_a_clear_error():
    rng = np.random.default_rng(0)
    with pytest.raises(FaceweaveError, match="unknown attribute"):
        captions_from_attributes({"Sparkly": 1}, rng)
    with pytest.raises(FaceweaveError, match="0 or 1"):
        captions_from_attributes({"Smiling": 2}, rng)
    with pytest.raises(FaceweaveError, match="positive number"):
        captions_from_attributes({"Smiling": 1}, rng, n=0)
    with pytest.raises(FaceweaveError, match="0..1"):
        describe_attributes({"Smiling": float("nan")})
    with pytest.raises(FaceweaveError, match="must be text"):
        parse_prompt(None)
