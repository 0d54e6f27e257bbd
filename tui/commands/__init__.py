"""Implementations of the debugging and demo subcommands of `interlock` (`test`, `diff`, `web`,
`run --watch`). `tui.cli` holds their parser lines and dispatch; each module here imports only
what its command needs, so headless commands still start fast."""
