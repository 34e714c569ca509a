"""Sentence tables for ``multi_session``, one table per split with no sentence in common.

Rules are the agent scenario: a repository's working conventions, stated by the user in an early
session and asked about later; some are changed in a later session. ``{v}`` is the value, drawn
from ``values`` or, when ``values`` is ``"name"``, invented (split-disjoint, see ``_split``).
Events are dated by the session they are mentioned in (temporal questions). Chains are two facts
in (possibly) different sessions that must be combined (multi-hop questions).
"""

from __future__ import annotations

# (statement, question, values, extra accepted answers as templates of {v})
RULES = {
    "eval": [
        ("In this repository, commit messages use the {v}.", "Which style do commit messages use in this repository?",
         ["imperative mood", "past tense", "present progressive tense", "conventional commits format"], []),
        ("Before pushing, always run the tests with {v}.", "Which command runs the tests before pushing?",
         ["make check", "tox -e quick", "just test", "nox -s unit"], []),
        ("Pull requests target the {v} branch.", "Which branch do pull requests target?",
         ["develop", "trunk", "next", "integration"], ["{v} branch"]),
        ("Lines in this codebase are capped at {v} characters.", "What is the line length limit in this codebase?",
         ["79", "88", "100", "120"], ["{v} characters"]),
        ("Every pull request needs an approval from {v}.", "Whose approval does every pull request need?", "name", []),
        ("We format the Python code with {v}.", "Which tool formats the Python code?",
         ["black", "yapf", "autopep8", "ruff format"], []),
        ("Issue references in commit messages start with the prefix {v}.", "Which prefix do issue references in commit messages start with?", "prefix", []),
        ("The project supports Python {v} and newer.", "Which is the oldest Python version the project supports?",
         ["3.9", "3.10", "3.11", "3.12"], ["Python {v}"]),
    ],
    "train": [
        ("Indentation in this project is {v}.", "How is code indented in this project?",
         ["two spaces", "four spaces", "tabs", "three spaces"], []),
        ("Releases are cut every {v}.", "On which day are releases cut?",
         ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"], []),
        ("A change needs {v} approvals before it can be merged.", "How many approvals does a change need before merging?",
         ["two", "three", "four", "five"], ["{v} approvals"]),
        ("Documentation lives in the {v} folder.", "Which folder holds the documentation?",
         ["docs", "handbook", "site", "manual"], ["{v} folder"]),
        ("The linter we rely on is {v}.", "Which linter does the project rely on?",
         ["flake8", "pylint", "pyflakes", "prospector"], []),
        ("Production services log at the {v} level.", "At which level do production services log?",
         ["warning", "info", "error", "critical"], []),
        ("The staging server is called {v}.", "What is the staging server called?", "name", []),
        ("Changelog entries go into {v}.", "Where do changelog entries go?",
         ["CHANGES.md", "NEWS.rst", "HISTORY.txt", "changelog.d"], []),
    ],
}

# (statement, question); {x} is an invented name, {ver} a version number
EVENTS = {
    "eval": [
        ("Today we shipped version {ver} of {x}.", "When did the team ship version {ver} of {x}?"),
        ("I onboarded a new teammate called {x} today.", "When did the user onboard {x}?"),
        ("This morning we migrated the {x} database to a new cluster.", "When was the {x} database migrated?"),
        ("I gave a talk about {x} at a meetup today.", "When did the user give a talk about {x}?"),
    ],
    "train": [
        ("We renamed the {x} service today.", "When was the {x} service renamed?"),
        ("Today I fixed the outage in the {x} pipeline.", "When did the user fix the outage in the {x} pipeline?"),
        ("A contractor named {x} started with us today.", "When did the contractor {x} start?"),
        ("We archived the old {x} repository today.", "When was the old {x} repository archived?"),
    ],
}

# (first statement, second statement, question); {a} and {b} invented, {b} the answer
CHAINS = {
    "eval": [
        ("My manager is {a}.", "{a} is based in {b}.", "In which city is the user's manager based?"),
        ("The {c} repository is owned by the {a} team.", "The {a} team talks in the {b} channel.", "Which channel does the team that owns the {c} repository talk in?"),
        ("The {c} service is deployed on the {a} cluster.", "The {a} cluster runs in the {b} data centre.", "In which data centre does the {c} service run?"),
    ],
    "train": [
        ("My mentor is {a}.", "{a} grew up in {b}.", "Where did the user's mentor grow up?"),
        ("The {c} library is maintained by {a}.", "{a} mostly writes code in {b}.", "In which language does the maintainer of the {c} library mostly write code?"),
        ("The {c} dashboard reads from the {a} warehouse.", "The {a} warehouse is administered by {b}.", "Who administers the warehouse the {c} dashboard reads from?"),
    ],
}

STYLE = {
    "eval": {
        "intro": "Below are earlier conversations between a user and their coding assistant, oldest first.\n",
        "header": "[Session {k}, {date}]\n",
        "user": "User: {text}\n",
        "assistant": "Assistant: {text}\n",
        "lead": ["Quick note for later: ", "One more convention: ", "Please keep this in mind: ", ""],
        "update": ["Change of plan: ", "We changed an earlier rule. ", "Update: "],
        "ack": ["Noted, I will keep that in mind.", "Got it, thanks for letting me know.", "Understood."],
        "filler": ["Can you explain this part of the Python documentation?", "What does the reference manual say here?",
                   "Could you summarise how this works?", "I am reading the docs again; what is the gist?"],
        "ask": " Answer in a few words, or say \"not mentioned\" if the conversations do not say.",
        "prefix": "Answer:",
    },
    "train": {
        "intro": "What follows is the history of chats between a developer and an AI helper, in date order.\n",
        "header": "--- Chat {k} on {date} ---\n",
        "user": "Developer: {text}\n",
        "assistant": "Helper: {text}\n",
        "lead": ["For the record: ", "Something to remember: ", "Also: ", ""],
        "update": ["Correction to what I said before: ", "That rule changed. ", "New rule: "],
        "ack": ["Okay, recorded.", "Thanks, I have made a note of it.", "Sure, I will remember."],
        "filler": ["Walk me through this section, please.", "Give me a short overview of this topic.",
                   "Summarise this passage for me.", "What should I take away from this?"],
        "ask": " Reply briefly; if it never came up, reply \"not mentioned\".",
        "prefix": "Reply:",
    },
}

# invented-name shapes for rule values that are not from a list
VALUE_SHAPES = {"name": lambda w: w, "prefix": lambda w: w[:4].upper()}
