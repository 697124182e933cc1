"""Chaos scenarios: the file (`spec`), the runner, the judge of expectations and the words for each
step and expectation.
"""
