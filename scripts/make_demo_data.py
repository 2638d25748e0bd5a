#!/usr/bin/env python
"""Write the synthetic demo summarization dataset (deterministic; the output is committed).

Each document opens with a lead sentence stating one fact (three phrasings), followed by
6-12 filler sentences that mention distractor names, places and numbers. The summary is a
fixed compression of the lead fact, e.g.

  document: "Maria Okafor, the mayor of Lisbon, opened a new library on Tuesday. ..."
  summary:  "Lisbon mayor Maria Okafor opens library."

A model must learn the template *and* copy the right names out of the lead, so ROUGE is
~0 before training and the learning rate visibly matters.

    python scripts/make_demo_data.py            # writes data/demo/{train,validation,test}.jsonl
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/demo", help="output folder")
    parser.add_argument("--seed", type=int, default=1234, help="generator seed")
    parser.add_argument("--sizes", default="2000,100,200", help="train,validation,test sizes")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "validation", "test"), map(int, args.sizes.split(","))):
        rows = [make_example(rng) for _ in range(n)]
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        print(f"wrote {out / f'{split}.jsonl'} ({n} examples)")


if __name__ == "__main__":
    main()
