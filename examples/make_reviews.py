"""Writes the example data set: short film reviews labeled positive/negative.

The sentences are composed from hand-written phrases, so the data is the project's own and can
be regenerated exactly: python examples/make_reviews.py
"""

import csv
import random
from pathlib import Path

SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the script", "the soundtrack",
            "the ending", "the cast", "the director's vision", "the cinematography", "the dialogue",
            "the second half", "the lead performance", "the pacing", "the whole thing", "the story",
            "the humour", "the visual effects", "the screenplay", "this sequel"]
POSITIVE = ["is an absolute delight", "is wonderfully moving", "kept me gripped throughout",
            "is smart, funny and warm", "is a genuine triumph", "left me smiling for days",
            "is beautifully crafted", "works brilliantly", "is fresh and inventive",
            "is touching without being sentimental", "is a joy to watch", "deserves every award",
            "is sharp and confident", "feels alive in every scene", "is pure fun from start to finish",
            "surprised me in the best way", "is tender and honest", "soars"]
NEGATIVE = ["is a dull, lifeless mess", "dragged on forever", "is painfully predictable",
            "made no sense at all", "is a waste of a good cast", "left me cold",
            "is clumsy and forgettable", "falls completely flat", "is tedious and overlong",
            "felt lazy and cynical", "is an embarrassment", "bored me to tears",
            "is loud but empty", "never comes together", "is a chore to sit through",
            "insults the audience", "is sloppy and confused", "sinks without a trace"]
OPENERS = ["", "honestly, ", "frankly, ", "i have to say ", "in the end ", "to be fair, ",
           "overall ", "sadly, ", "somehow ", "without a doubt "]
CLOSERS = [".", "!", ", and i would say so again.", ". recommended? you decide.",
           " - that is my verdict.", ", no question.", "."]


def make(rng: random.Random, n: int) -> list[tuple[str, str]]:
    rows, seen = [], set()
    while len(rows) < n:
        label = rng.choice(["positive", "negative"])
        phrase = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        text = f"{rng.choice(OPENERS)}{rng.choice(SUBJECTS)} {phrase}{rng.choice(CLOSERS)}"
        text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    return rows


def main() -> None:
    rng = random.Random(20261125)
    rows = make(rng, 420)
    out = Path(__file__).parent / "reviews"
    out.mkdir(exist_ok=True)
    for name, part in (("train", rows[:300]), ("dev", rows[300:360]), ("test", rows[360:])):
        with open(out / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["review", "sentiment"])
            writer.writerows(part)


if __name__ == "__main__":
    main()
