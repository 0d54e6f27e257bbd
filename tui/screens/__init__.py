"""The console's screens, one module (and one .tcss) each."""
