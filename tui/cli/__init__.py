"""The `kube-llm` command line: every subcommand's flags (`main`) and entry points (`cockpit` for
`tui` and `demo`, `commands` for `load`, `scenario` and `report`).
"""
