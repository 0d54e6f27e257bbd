"""The bridge: the one place where the console talks to the engine and the store.

Contract: the console's screens and widgets never touch the store or the run manager; they call
the bridge's commands and receive its messages (`tui.messages`).

- It hosts one `RunManager` (with a `Store` on the database) in the app's event loop and is a
  sink on it, so this process's runs arrive live, event by event.
- It polls the store read-only every `poll_interval` for what other processes do: the runs list,
  the events of the runs on screen (`events(after_seq=last)`), the breakers.
- Events are batched and posted at most every `flush_interval` (10 times a second), and queued
  messages coalesce (`Message.can_replace`), so a burst of events never floods the UI.
- Commands act through the manager for runs of this process and through store commands for runs
  owned by other live processes; a run whose lease is lost shows `interrupted` (nothing is
  written to show it) and a cancel of it takes its lease and is applied in the store.
"""

from tui.bridge.commands import CommandError, folder_stamp, operator_actor
from tui.bridge.core import Bridge
from tui.pipeline_folder import scan_pipelines

__all__ = ["Bridge", "CommandError", "folder_stamp", "operator_actor", "scan_pipelines"]
