"""Interlock's front ends: the command line (`tui.cli`) and the Textual console (`tui.app`)."""
