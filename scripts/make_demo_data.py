#!/usr/bin/env python
"""Write the synthetic demo summarization dataset (deterministic; the output is committed).

Each document opens with a lead sentence stating one fact (three phrasings), followed by
6-12 filler sentences that mention distractor names, places and numbers. The summary is a
fixed compression of the lead fact, e.g.

  document: "Maria Okafor, the mayor of Lisbon, opened a new library on Tuesday. ..."
  summary:  "Lisbon mayor Maria Okafor opens library."

A model must learn the template *and* copy the right names out of the lead, so ROUGE is
~0 before training and the learning rate visibly matters.

--long-words N writes long documents instead (LED's real inputs: 16k+ tokens), made at run time, never
committed: the same lead and its summary, then sections of about 40-160 words until the document has N
words. Each section opens with a topic sentence that the summary repeats (the first 20), so the summary
is long too (about 250 words: more than 256 tokens). Section text is drawn from a fixed lexicon of
LEXICON made-up words (Zipf-distributed, as word frequencies are), rich enough for a byte-level BPE
tokenizer to reach a real vocabulary size (50,265, led-base's) rather than stopping at the few hundred
words of the demo templates.

    python scripts/make_demo_data.py            # writes data/demo/{train,validation,test}.jsonl
    python scripts/make_demo_data.py --long-words 14000 --sizes 64,4,4 --out results/long_corpus
"""

import argparse
import json
import random
from pathlib import Path

FIRST = "Maria John Aiko Lena Omar Priya Carlos Nadia Felix Ines Tomas Yara Ravi Sofia Emil Zara Hugo Amara Ivan Leila".split()
LAST = "Okafor Smith Tanaka Novak Haddad Rao Mendes Petrov Weber Costa Berg Khan Silva Moreau Ito Lund Baker Ortiz Sato Quinn".split()
ROLES = "mayor governor minister director chief president".split()
PLACES = "Lisbon Nairobi Osaka Toronto Lagos Quito Oslo Hanoi Porto Dakar Lima Riga Kyoto Perth Accra Tunis".split()
OBJECTS = "library bridge hospital school museum stadium park clinic airport harbour theatre factory".split()
ACTIONS = [("opened", "opens"), ("closed", "closes"), ("announced", "announces"), ("rebuilt", "rebuilds")]
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

LEADS = [
    "{first} {last}, the {role} of {place}, {past} a new {obj} on {day}.",
    "On {day}, {place} {role} {first} {last} {past} a new {obj}.",
    "A new {obj} was {past} on {day} by {first} {last}, who is the {role} of {place}.",
]
FILLERS = [
    "Local residents said the weather in {place} was {adj} that week.",
    "{first} {last} told reporters that {num} people had attended the meeting.",
    "The council of {place} will meet again next {day}.",
    "Earlier, {first} {last} visited the old {obj} near the river.",
    "Officials expect about {num} visitors in the first month.",
    "A spokesperson for the {role} declined to comment on the budget.",
    "The project in {place} cost more than {num} thousand dollars.",
    "Critics, including {first} {last}, questioned the timing of the plan.",
    "Traffic around the {obj} was {adj} for most of the day.",
    "Newspapers in {place} described the mood as {adj}.",
]
ADJS = "calm busy quiet tense cheerful grey warm uncertain".split()
LEXICON = 60_000  # made-up words of the long documents
SYLLABLES = [c + v for c in ["", *"bcdfghklmnprstvz", "br", "st", "tr", "ch", "sh"] for v in "aeiou"]


def make_example(rng: random.Random) -> dict:
    fact = dict(
        first=rng.choice(FIRST),
        last=rng.choice(LAST),
        role=rng.choice(ROLES),
        place=rng.choice(PLACES),
        obj=rng.choice(OBJECTS),
        day=rng.choice(DAYS),
    )
    past, present = rng.choice(ACTIONS)
    lead = rng.choice(LEADS).format(past=past, **fact)
    fillers = []
    for _ in range(rng.randint(6, 12)):
        fillers.append(
            rng.choice(FILLERS).format(
                first=rng.choice(FIRST),
                last=rng.choice(LAST),
                role=rng.choice(ROLES),
                place=rng.choice(PLACES),
                obj=rng.choice(OBJECTS),
                day=rng.choice(DAYS),
                adj=rng.choice(ADJS),
                num=rng.randint(2, 900),
            )
        )
    summary = "{place} {role} {first} {last} {present} {obj}.".format(present=present, **fact)
    return {"document": " ".join([lead, *fillers]), "summary": summary}


def lexicon(n: int = LEXICON) -> tuple[list[str], list[float]]:
    """n distinct made-up words of 2-4 syllables and Zipf cumulative weights (the k-th word has weight 1/k), the
    same on every machine: every split and every corpus shares them."""
    rng, words, seen = random.Random(0), [], set()
    while len(words) < n:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    cum, total = [], 0.0
    for k in range(1, n + 1):
        total += 1 / k
        cum.append(total)
    return words, cum


def make_long_example(rng: random.Random, n_words: int, lex: tuple[list[str], list[float]]) -> dict:
    """A demo example grown to about n_words words: sections of made-up text whose topic sentences the summary
    repeats after the lead fact."""
    words, cum = lex
    sentence = lambda k: " ".join(rng.choices(words, cum_weights=cum, k=k)).capitalize() + "."
    example = make_example(rng)
    parts, topics, count = [example["document"]], [], len(example["document"].split())
    while count < n_words:
        topic = sentence(rng.randint(8, 16))
        body = [sentence(rng.randint(8, 24)) for _ in range(rng.randint(2, 8))]
        topics.append(topic)
        parts += [topic, *body]
        count += sum(len(s.split()) for s in (topic, *body))
    return {"document": " ".join(parts), "summary": " ".join([example["summary"], *topics[:20]])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/demo", help="output folder")
    parser.add_argument("--seed", type=int, default=1234, help="generator seed")
    parser.add_argument("--sizes", default="2000,100,200", help="train,validation,test sizes")
    parser.add_argument("--long-words", type=int, default=0, help="long documents of about this many words each")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lex = lexicon() if args.long_words else None
    make = (lambda: make_long_example(rng, args.long_words, lex)) if lex else (lambda: make_example(rng))
    for split, n in zip(("train", "validation", "test"), map(int, args.sizes.split(","))):
        rows = [make() for _ in range(n)]
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        print(f"wrote {out / f'{split}.jsonl'} ({n} examples)")


if __name__ == "__main__":
    main()
