"""The load engine's built-in prompt set: short, varied user questions.

Short on purpose: the load is about the gateway and the engine's first token and token rate,
so prompts differ in topic and wording (no cache hits on identical text) but not in length by
much. A user's turns walk through the set from a different start than the next user's.
"""

from __future__ import annotations

__all__ = ["PROMPTS", "prompt_for"]

PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Give me three tips for sleeping well.",
    "Explain what a Kubernetes pod is in two sentences.",
    "Write a haiku about autumn.",
    "How do I boil an egg so the yolk stays soft?",
    "Name three planets and one fact about each.",
    "What does HTTP status 429 mean?",
    "Suggest a name for a grey cat.",
    "Translate 'good morning' into Spanish and German.",
    "Why is the sky blue? Keep it short.",
    "List four fruits that are high in vitamin C.",
    "What is the difference between a list and a tuple in Python?",
    "Write one sentence that uses the word 'lighthouse'.",
    "How many minutes are there in a day?",
    "Give me a quick stretch to do at my desk.",
    "What is a load balancer?",
    "Recommend a board game for four players.",
    "Summarise the plot of Little Red Riding Hood in one line.",
    "What causes rain?",
    "Describe the smell of fresh bread.",
    "What is 17 times 23?",
    "Give me a motivational quote about patience.",
    "Explain recursion to a ten-year-old.",
    "What should I pack for a day hike?",
    "Name two famous bridges and where they are.",
    "What is the boiling point of water at sea level?",
    "Write a two-line poem about the sea.",
    "How does a refrigerator keep food cold?",
    "What is a good first programming language, and why?",
    "Suggest a healthy breakfast.",
    "What does a container orchestrator do?",
    "Tell me a fun fact about octopuses.",
)


def prompt_for(user: int, turn: int, prompts: tuple[str, ...] = PROMPTS) -> str:
    """The prompt a load user sends on a turn: each user starts at a different place."""
    if not prompts:
        raise ValueError("the prompt set is empty")
    # 7 is coprime with the set's size, so users spread over the set instead of bunching up.
    return prompts[(user * 7 + turn) % len(prompts)]
