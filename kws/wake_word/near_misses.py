"""Near misses of a wake word: words that sound like it, to synthesize as negatives.

A detector trained only on its word and on unrelated speech fires on words that
sound alike ("happy": "hippy", "sappy", "happen"). Near misses are chosen by
sound, not spelling: each candidate is transcribed to phonemes by espeak-ng (the
voice that synthesizes the positives: EspeakEngine.phonemes, gmw/en-US), and the
candidates closest to the wake word by edit distance over phonemes are kept. The
candidates are
- the words of the data set and of Speech Commands (real words: SPEECH_COMMANDS_WORDS
  and the word folders of --data_dir), and the user's --near_miss_words;
- spellings one rule away from the wake word (respellings pronounced as words):
  a vowel letter changed into another vowel letter; a consonant letter changed into
  another of its class (CONSONANT_CLASSES: voicing and place neighbours); the first
  consonant letters changed into any one consonant (rhymes: bed -> fed, led, red);
  one letter left out.
A candidate is left out when it sounds the same as the wake word (distance 0: a
homophone such as "hapy" would teach the detector to ignore its own word) or
contains the wake word's phonemes (the detector may fire on "unhappy": it heard
"happy"). Among candidates at the same distance, real words come first; then the phoneme
where they first differ from the wake word takes turns (a change at the start,
in the vowel, at the end), so that rhymes do not crowd out the rest; then a hash
of the candidate decides, so the choice is the same on every run.
"""
import re
import zlib
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

VOWELS = "aeiouy"
CONSONANT_CLASSES = ("bp", "dt", "gkc", "fv", "szc", "mn", "lr", "wy", "hj", "qk", "xs")
CONSONANTS = "bcdfghjklmnpqrstvwxz"
ONSETS = "bcdfghjklmnprstvwz"  # the first consonants of a rhyme
WORD_PATTERN = re.compile(r"[a-z][a-z'-]*")

Phonemize = Callable[[str], List[str]]


def edit_distance(first: Sequence[str], second: Sequence[str]) -> int:
    """Levenshtein distance between two sequences (of phonemes): insertions, deletions and
    substitutions cost 1."""
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, 1):
        current = [i]
        for j, b in enumerate(second, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def _contains(sequence: Sequence[str], part: Sequence[str]) -> bool:
    return any(list(sequence[i:i + len(part)]) == list(part)
               for i in range(len(sequence) - len(part) + 1))


def respellings(word: str) -> List[str]:
    """The spellings one rule away from word (the module docstring's rules), sorted."""
    found = set()
    for i, letter in enumerate(word):
        if letter in VOWELS:
            found.update(word[:i] + vowel + word[i + 1:] for vowel in VOWELS)
        for group in CONSONANT_CLASSES:
            if letter in group:
                found.update(word[:i] + other + word[i + 1:] for other in group)
        found.add(word[:i] + word[i + 1:])
    onset = len(word) - len(word.lstrip(CONSONANTS))
    found.update(consonant + word[onset:] for consonant in ONSETS)
    return sorted(spelling for spelling in found - {word} if WORD_PATTERN.fullmatch(spelling))


def choose(wake_word: str, real_words: Iterable[str], count: int, phonemize: Phonemize
           ) -> List[Tuple[str, int]]:
    """The count near misses of wake_word (word, phoneme distance), closest first."""
    target = phonemize(wake_word)
    real = {word.lower() for word in real_words if WORD_PATTERN.fullmatch(word.lower())}
    heard = {}
    for candidate in sorted(real | set(respellings(wake_word))):
        if candidate == wake_word:
            continue
        phonemes = phonemize(candidate)
        distance = edit_distance(target, phonemes)
        key = tuple(phonemes)
        if distance == 0 or _contains(phonemes, target) or key in heard and heard[key][1] in real:
            continue  # a homophone, the word inside another, or a sound already chosen
        heard[key] = (distance, candidate)
    groups: Dict[Tuple[int, int], List[str]] = {}
    for key, (distance, candidate) in heard.items():
        groups.setdefault((distance, _first_difference(target, key)), []).append(candidate)
    ranked = []
    for (distance, _), candidates in groups.items():
        candidates.sort(key=lambda word: (word not in real, zlib.crc32(word.encode())))
        ranked += [(distance, turn, candidate) for turn, candidate in enumerate(candidates)]
    ranked.sort(key=lambda item: (item[0], item[2] not in real, item[1],
                                  zlib.crc32(item[2].encode())))
    return [(candidate, distance) for distance, _, candidate in ranked[:count]]


def _first_difference(first: Sequence[str], second: Sequence[str]) -> int:
    """Where two phoneme sequences first differ."""
    return next((i for i, (a, b) in enumerate(zip(first, second)) if a != b),
                min(len(first), len(second)))
