"""headnode's headless core: templates, image scripts, planner, networks, transfers and VMs.

Nothing here imports textual, tui or screens (an import-linter contract in the tests proves it).
"""
